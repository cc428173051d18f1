package foreman_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

// signedHeader signs body the way the contract says foreman does: both schemes, one key.
func signedHeader(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	key := []byte(secret)
	if len(secret) > 6 && secret[:6] == "whsec_" {
		var err error
		if key, err = base64.StdEncoding.DecodeString(secret[6:]); err != nil {
			t.Fatal(err)
		}
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	h := hmac.New(sha256.New, key)
	h.Write(body)
	legacy := "sha256=" + hex.EncodeToString(h.Sum(nil))
	h = hmac.New(sha256.New, key)
	h.Write([]byte(id + "." + unix + "." + string(body)))
	std := "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
	return http.Header{
		"X-Foreman-Signature": {legacy},
		"Webhook-Id":          {id},
		"Webhook-Timestamp":   {unix},
		"Webhook-Signature":   {std},
	}
}

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_760_000_000, 0)
	body := []byte(`{"job_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","state":"done"}`)
	const secret = "s3cret"
	good := signedHeader(t, secret, "msg_1", now, body)
	only := func(keys ...string) http.Header {
		h := http.Header{}
		for _, k := range keys {
			h[http.CanonicalHeaderKey(k)] = good.Values(k)
		}
		return h
	}
	with := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		h.Set(k, v)
		return h
	}
	otherSig := signedHeader(t, "old-secret", "msg_1", now, body).Get("webhook-signature")
	legacy := foreman.VerifyOptions{AllowLegacySignature: true}

	tests := []struct {
		name    string
		header  http.Header
		body    []byte
		opts    foreman.VerifyOptions
		wantErr error
	}{
		{"both schemes valid", good, body, foreman.VerifyOptions{}, nil},
		{"standard headers alone", only("webhook-id", "webhook-timestamp", "webhook-signature"), body, foreman.VerifyOptions{}, nil},
		{"X-Foreman-Signature alone is a replayable event, refused", only("X-Foreman-Signature"), body, foreman.VerifyOptions{}, foreman.ErrNoSignature},
		{"X-Foreman-Signature alone when the legacy signature is allowed", only("X-Foreman-Signature"), body, legacy, nil},
		{"a tampered body", good, append([]byte(`{"x":1,`), body[1:]...), foreman.VerifyOptions{}, foreman.ErrInvalidSignature},
		{"a tampered body with the legacy header only", only("X-Foreman-Signature"), []byte(`{}`), legacy, foreman.ErrInvalidSignature},
		{"allowing the legacy signature does not bypass a stale timestamp", good, body, foreman.VerifyOptions{AllowLegacySignature: true, Now: func() time.Time { return now.Add(time.Hour) }}, foreman.ErrTimestamp},
		{"allowing the legacy signature does not bypass a bad standard signature", with(good, "webhook-signature", otherSig), body, legacy, foreman.ErrInvalidSignature},
		{"a changed webhook-id", with(good, "webhook-id", "msg_2"), body, foreman.VerifyOptions{}, foreman.ErrInvalidSignature},
		{"no signature at all", http.Header{}, body, foreman.VerifyOptions{}, foreman.ErrNoSignature},
		{"a signature without id and timestamp", only("webhook-signature"), body, foreman.VerifyOptions{}, foreman.ErrNoSignature},
		{"rotation: the old signature first, then the new one", with(good, "webhook-signature", otherSig+" "+good.Get("webhook-signature")), body, foreman.VerifyOptions{}, nil},
		{"unknown versions are skipped", with(good, "webhook-signature", "v1a,AAAA v1,!!! "+good.Get("webhook-signature")), body, foreman.VerifyOptions{}, nil},
		{"only a signature by another secret", with(good, "webhook-signature", otherSig), body, foreman.VerifyOptions{}, foreman.ErrInvalidSignature},
		{"rotation: several secrets accepted", with(good, "webhook-signature", otherSig), body, foreman.VerifyOptions{Secrets: []string{"new-secret", "old-secret"}}, nil},
		{"legacy rotation: several sha256 entries", with(only("X-Foreman-Signature"), "X-Foreman-Signature", "sha256=00ff, "+good.Get("X-Foreman-Signature")), body, legacy, nil},
		{"six minutes old", good, body, foreman.VerifyOptions{Now: func() time.Time { return now.Add(6 * time.Minute) }}, foreman.ErrTimestamp},
		{"six minutes in the future", good, body, foreman.VerifyOptions{Now: func() time.Time { return now.Add(-6 * time.Minute) }}, foreman.ErrTimestamp},
		{"four minutes old", good, body, foreman.VerifyOptions{Now: func() time.Time { return now.Add(4 * time.Minute) }}, nil},
		{"an hour old with a custom tolerance", good, body, foreman.VerifyOptions{Tolerance: 2 * time.Hour, Now: func() time.Time { return now.Add(time.Hour) }}, nil},
		{"an hour old with the check off", good, body, foreman.VerifyOptions{Tolerance: -1, Now: func() time.Time { return now.Add(time.Hour) }}, nil},
		{"a timestamp that is not a number", with(good, "webhook-timestamp", "yesterday"), body, foreman.VerifyOptions{}, foreman.ErrTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			if opts.Secrets == nil {
				opts.Secrets = []string{secret}
			}
			if opts.Now == nil {
				opts.Now = func() time.Time { return now }
			}
			err := foreman.VerifyWebhookWithOptions(tt.header, tt.body, opts)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("want success, got %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("want %v, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestVerifyWebhookDecodesWhsecSecrets(t *testing.T) {
	t.Parallel()
	body := []byte(`{"state":"working"}`)
	const rawKey = "a key of thirty-two plain bytes!" // 32 bytes
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(rawKey))
	h := signedHeader(t, secret, "msg_x", time.Now(), body)
	if err := foreman.VerifyWebhook(secret, h, body); err != nil {
		t.Fatalf("a whsec_ secret must verify with its decoded key: %v", err)
	}
	// The key is the decoded bytes, so the same bytes given as a plain secret verify too.
	if err := foreman.VerifyWebhook(rawKey, h, body); err != nil {
		t.Fatalf("the decoded key as a plain secret must verify: %v", err)
	}
}

// Standard Webhooks keys are 24 to 64 bytes of strict base64; anything else would let a lenient
// decoder produce a short or empty key that anyone can sign with.
func TestVerifyWebhookRefusesUnusableSecrets(t *testing.T) {
	t.Parallel()
	key := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	// 25 bytes end in "AA==": "AB==" sets padding bits a lenient decoder ignores.
	nonZeroPadding := key(25)[:33] + "B=="
	tests := []struct {
		name   string
		secret string
		want   string // in the error; "" means the secret is usable
	}{
		{"an empty secret", "", "empty"},
		{"whsec_ and nothing else", "whsec_", "decodes to 0 bytes"},
		{"whsec_ with characters outside base64", "whsec_!!!!", "not standard padded base64"},
		{"23 bytes", "whsec_" + key(23), "decodes to 23 bytes"},
		{"24 bytes", "whsec_" + key(24), ""},
		{"64 bytes", "whsec_" + key(64), ""},
		{"65 bytes", "whsec_" + key(65), "decodes to 65 bytes"},
		{"missing padding", "whsec_" + strings.TrimRight(key(25), "="), "not standard padded base64"},
		{"non-zero padding bits", "whsec_" + nonZeroPadding, "not standard padded base64"},
		{"the URL-safe alphabet", "whsec_" + strings.Repeat("-_", 16), "not standard padded base64"},
		{"a line break inside", "whsec_" + key(24)[:16] + "\n" + key(24)[16:], "line break at byte 16"},
		{"a trailing newline", "whsec_" + key(24) + "\n", "line break"},
		{"a plain secret is its bytes, any length", "short", ""},
	}
	body := []byte(`{}`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A header signed by some other key: usable secrets fail as a mismatch, unusable
			// ones before any comparison.
			h := signedHeader(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("another key of 24 bytes!")), "msg_1", time.Now(), body)
			err := foreman.VerifyWebhook(tt.secret, h, body)
			if tt.want == "" {
				if !errors.Is(err, foreman.ErrInvalidSignature) {
					t.Fatalf("a usable secret must get as far as the signature check, got %v", err)
				}
				return
			}
			if !errors.Is(err, foreman.ErrSecret) || errors.Is(err, foreman.ErrInvalidSignature) {
				t.Fatalf("want ErrSecret, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if len(tt.secret) > len("whsec_") && strings.Contains(err.Error(), tt.secret[len("whsec_"):]) {
				t.Errorf("the error quotes the secret: %q", err)
			}
		})
	}
}
