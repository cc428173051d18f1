// Webhook verification for receivers of foreman's job events. foreman signs each event twice
// with one key: the Standard Webhooks headers (HMAC of id, timestamp and body), which bound
// replays by the timestamp, and X-Foreman-Signature (HMAC of the body alone), which does not and is
// accepted only when the receiver asks for it.
package foreman

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a webhook's timestamp may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// Errors of webhook verification, for errors.Is.
var (
	ErrNoSignature      = errors.New("foreman: webhook carries no signature")
	ErrInvalidSignature = errors.New("foreman: webhook signature does not match")
	ErrTimestamp        = errors.New("foreman: webhook timestamp is outside the tolerance")
	// ErrSecret is a webhook secret that cannot be a key: empty, or a whsec_ secret that is not
	// strict base64 of 24 to 64 bytes. It is the receiver's mistake, never the sender's.
	ErrSecret = errors.New("foreman: unusable webhook secret")
)

// A whsec_ key is 24 to 64 bytes, as Standard Webhooks defines it: fewer would be guessable, and
// foreman refuses to start with such a secret.
const (
	minWhsecKey = 24
	maxWhsecKey = 64
)

// VerifyOptions tunes [VerifyWebhookWithOptions].
type VerifyOptions struct {
	// Secrets are the accepted values of FOREMAN_WEBHOOK_SECRET; during a rotation list the new
	// and the old one. A secret starting with "whsec_" is standard, padded base64 of a 24 to 64
	// byte key after the prefix (Standard Webhooks style); any other secret is used as its UTF-8
	// bytes. A secret that breaks these rules fails every verification with [ErrSecret].
	Secrets []string
	// Tolerance bounds the age (and the clock skew) of the webhook-timestamp header; 0 means
	// DefaultTolerance and a negative value turns the check off.
	Tolerance time.Duration
	// Now is the receiver's clock, time.Now when nil.
	Now func() time.Time
	// AllowLegacySignature accepts an event that carries X-Foreman-Signature without the
	// Standard Webhooks headers. That signature covers the body alone, so anyone who captured
	// one event can replay it forever after stripping the other headers; foreman always sends
	// both, so leave this off unless something between foreman and you drops webhook-* headers.
	AllowLegacySignature bool
}

// VerifyWebhook checks that body and header come from a foreman holding secret and that the
// event is recent (within [DefaultTolerance]), by the timestamped Standard Webhooks signature. It
// returns nil or an error wrapping [ErrNoSignature] (also for an event that carries only
// X-Foreman-Signature: see [VerifyOptions].AllowLegacySignature), [ErrInvalidSignature],
// [ErrTimestamp] or [ErrSecret]. Pass the raw body, before any JSON decoding.
func VerifyWebhook(secret string, header http.Header, body []byte) error {
	return VerifyWebhookWithOptions(header, body, VerifyOptions{Secrets: []string{secret}})
}

// VerifyWebhookWithOptions is [VerifyWebhook] with several secrets, another tolerance or clock.
//
// The Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) decide: the
// timestamp must be within the tolerance and one of the space-separated "v1,<base64>" signatures
// must match one secret. Without them the event is refused with [ErrNoSignature], unless
// opts.AllowLegacySignature is set; then X-Foreman-Signature ("sha256=<hex>", several may be
// separated by commas or spaces) must match one secret.
func VerifyWebhookWithOptions(header http.Header, body []byte, opts VerifyOptions) error {
	keys := make([][]byte, 0, len(opts.Secrets))
	for _, s := range opts.Secrets {
		k, err := hmacKey(s)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: VerifyWebhook needs at least one secret", ErrSecret)
	}

	if sigs := header.Get("webhook-signature"); sigs != "" {
		return verifyStandard(keys, header, sigs, body, opts)
	}
	if sigs := header.Get("X-Foreman-Signature"); sigs != "" {
		if !opts.AllowLegacySignature {
			return fmt.Errorf("%w: only X-Foreman-Signature is present, which has no timestamp; "+
				"it is accepted only with VerifyOptions.AllowLegacySignature", ErrNoSignature)
		}
		return verifyLegacy(keys, sigs, body)
	}
	return fmt.Errorf("%w: neither webhook-signature nor X-Foreman-Signature is set", ErrNoSignature)
}

// hmacKey is the key a secret stands for. Its errors never quote the secret.
func hmacKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: a webhook secret is empty", ErrSecret)
	}
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return []byte(secret), nil
	}
	// A lenient decode turns "whsec_" or "whsec_!!!!" into an empty key that anyone can sign
	// with. Strict() refuses non-zero padding bits but still skips line breaks, hence the check.
	if i := strings.IndexAny(rest, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("%w: the whsec_ secret has a line break at byte %d after the prefix", ErrSecret, i)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: the whsec_ secret is not standard padded base64 after the prefix (%v)", ErrSecret, err)
	}
	if len(key) < minWhsecKey || len(key) > maxWhsecKey {
		return nil, fmt.Errorf("%w: the whsec_ secret decodes to %d bytes; a key must have %d to %d", ErrSecret, len(key), minWhsecKey, maxWhsecKey)
	}
	return key, nil
}

func verifyStandard(keys [][]byte, header http.Header, sigs string, body []byte, opts VerifyOptions) error {
	id, ts := header.Get("webhook-id"), header.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return fmt.Errorf("%w: webhook-signature is set without webhook-id and webhook-timestamp", ErrNoSignature)
	}
	if err := checkTimestamp(ts, opts); err != nil {
		return err
	}
	want := make([][]byte, len(keys))
	for i, k := range keys {
		want[i] = standardMAC(k, id, ts, body)
	}
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other schemes (v1a: asymmetric) are not foreman's
		}
		if got, err := base64.StdEncoding.DecodeString(sig); err == nil && matchesAny(want, got) {
			return nil
		}
	}
	return ErrInvalidSignature
}

// checkTimestamp bounds the age and the clock skew of a webhook-timestamp by the tolerance.
func checkTimestamp(ts string, opts VerifyOptions) error {
	if opts.Tolerance < 0 {
		return nil
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q is not unix seconds", ErrTimestamp, ts)
	}
	tolerance := opts.Tolerance
	if tolerance == 0 {
		tolerance = DefaultTolerance
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if skew := now().Sub(time.Unix(sec, 0)); skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: webhook-timestamp %s is %s away from now (tolerance %s)", ErrTimestamp, ts, skew.Round(time.Second), tolerance)
	}
	return nil
}

func verifyLegacy(keys [][]byte, sigs string, body []byte) error {
	want := make([][]byte, len(keys))
	for i, k := range keys {
		want[i] = legacyMAC(k, body)
	}
	for _, entry := range strings.FieldsFunc(sigs, func(r rune) bool { return r == ',' || r == ' ' }) {
		sig, ok := strings.CutPrefix(entry, "sha256=")
		if !ok {
			continue
		}
		if got, err := hex.DecodeString(sig); err == nil && matchesAny(want, got) {
			return nil
		}
	}
	return ErrInvalidSignature
}

// standardMAC is the Standard Webhooks v1 signature: HMAC-SHA256 of "<id>.<timestamp>.<body>".
func standardMAC(key []byte, id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	io.WriteString(h, id+"."+timestamp+".")
	h.Write(body)
	return h.Sum(nil)
}

// legacyMAC is X-Foreman-Signature's: HMAC-SHA256 of the body alone.
func legacyMAC(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}

// matchesAny reports whether got is one of want. Every candidate is compared, each in constant
// time, so the time taken does not tell which key matched.
func matchesAny(want [][]byte, got []byte) bool {
	ok := false
	for _, w := range want {
		ok = hmac.Equal(w, got) || ok
	}
	return ok
}
