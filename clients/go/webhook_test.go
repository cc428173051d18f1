package foreman_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

// signedHeader signs body as foreman does; TestSignTestWebhookSignsAsForemanDoes and the
// integration tests hold SignTestWebhook to foreman's own bytes.
func signedHeader(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	h, err := foreman.SignTestWebhook(secret, body, foreman.WithTestWebhookID(id), foreman.WithTestWebhookTime(ts))
	if err != nil {
		t.Fatal(err)
	}
	return h
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

func TestSignTestWebhookSignsAsForemanDoes(t *testing.T) {
	t.Parallel()
	// The headers foreman sent for this event (ExampleVerifyWebhookWithOptions holds the same).
	const secret = "my-webhook-secret"
	body := []byte(`{"job_id":"01JGZ8K3V4W5X6Y7Z8A9B0C1D2","state":"done","previous_state":"working"}`)
	sent := time.Unix(1767323045, 0)
	h, err := foreman.SignTestWebhook(secret, body,
		foreman.WithTestWebhookID("msg_01JGZ8K3V4W5X6Y7Z8A9B0C1D3"), foreman.WithTestWebhookTime(sent))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"X-Foreman-Signature": "sha256=60d37819892a8e4b848941b99fee6d1847aaa4c1703642d11aa07cc08d5fe21a",
		"Webhook-Id":          "msg_01JGZ8K3V4W5X6Y7Z8A9B0C1D3",
		"Webhook-Timestamp":   "1767323045",
		"Webhook-Signature":   "v1,Hd0QdmiqZ7bq62ZqgoRKMiESDKQcAIg0eIN7ZCw0HKA=",
		"Content-Type":        "application/json",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestSignTestWebhookMakesEventsThatVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"job_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","state":"done"}`)
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a key of thirty-two plain bytes!"))
	tests := []struct {
		name    string
		secret  string
		opts    []foreman.TestWebhookOption
		verify  func(h http.Header) error
		wantErr error
	}{
		{"a plain secret, now", "s3cret", nil, nil, nil},
		{"a whsec_ secret, now", whsec, nil, nil, nil},
		{"an hour ago is outside the tolerance", "s3cret", []foreman.TestWebhookOption{foreman.WithTestWebhookTime(time.Now().Add(-time.Hour))}, nil, foreman.ErrTimestamp},
		{"the body is tampered with", "s3cret", nil, func(h http.Header) error {
			return foreman.VerifyWebhook("s3cret", h, []byte(`{"state":"failed"}`))
		}, foreman.ErrInvalidSignature},
		{"stripped to the legacy signature, as a replay would be", "s3cret", nil, func(h http.Header) error {
			return foreman.VerifyWebhook("s3cret", http.Header{"X-Foreman-Signature": h.Values("X-Foreman-Signature")}, body)
		}, foreman.ErrNoSignature},
		{"the legacy signature alone when allowed", "s3cret", nil, func(h http.Header) error {
			return foreman.VerifyWebhookWithOptions(http.Header{"X-Foreman-Signature": h.Values("X-Foreman-Signature")}, body,
				foreman.VerifyOptions{Secrets: []string{"s3cret"}, AllowLegacySignature: true})
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := foreman.SignTestWebhook(tt.secret, body, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			verify := tt.verify
			if verify == nil {
				verify = func(h http.Header) error { return foreman.VerifyWebhook(tt.secret, h, body) }
			}
			if err := verify(h); !errors.Is(err, tt.wantErr) {
				t.Fatalf("want %v, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestSignTestWebhookDefaults(t *testing.T) {
	t.Parallel()
	before := time.Now().Unix()
	a, err := foreman.SignTestWebhook("s3cret", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := foreman.SignTestWebhook("s3cret", []byte(`{}`))
	if id := a.Get("webhook-id"); !strings.HasPrefix(id, "msg_") || id == b.Get("webhook-id") {
		t.Errorf("webhook-ids %q and %q: want fresh msg_ ids", id, b.Get("webhook-id"))
	}
	ts, err := strconv.ParseInt(a.Get("webhook-timestamp"), 10, 64)
	if err != nil || ts < before || ts > time.Now().Unix() {
		t.Errorf("webhook-timestamp %q is not now", a.Get("webhook-timestamp"))
	}
	if _, err := foreman.SignTestWebhook("whsec_", []byte(`{}`)); !errors.Is(err, foreman.ErrSecret) {
		t.Errorf("an unusable secret: want ErrSecret, got %v", err)
	}
}
