// Signing events as foreman does, for receivers that test their handlers (as stripe-go's
// webhook.GenerateTestSignedPayload does for Stripe's events). foreman itself signs in
// src/webhooks/signing.ts; the tests here hold this copy to the same bytes.
package foreman

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// TestWebhookOption changes what [SignTestWebhook] signs.
type TestWebhookOption func(*testWebhook)

type testWebhook struct {
	id string
	at time.Time
}

// WithTestWebhookID sets the webhook-id (a fresh "msg_…" by default). foreman's ids are
// "msg_<ULID>", and a receiver drops a repeated id as a redelivery.
func WithTestWebhookID(id string) TestWebhookOption {
	return func(w *testWebhook) { w.id = id }
}

// WithTestWebhookTime sets the webhook-timestamp (now by default), for events older than the
// receiver's tolerance or a receiver with a fixed clock.
func WithTestWebhookTime(t time.Time) TestWebhookOption {
	return func(w *testWebhook) { w.at = t }
}

// SignTestWebhook returns the headers foreman sends with body when FOREMAN_WEBHOOK_SECRET is
// secret: webhook-id, webhook-timestamp, webhook-signature and X-Foreman-Signature, with
// Content-Type and User-Agent. Set them on a request to test a receiver's handler with events that verify
// (tamper with the body or the headers afterwards for events that must not). The error wraps
// [ErrSecret] when secret cannot be a key.
func SignTestWebhook(secret string, body []byte, opts ...TestWebhookOption) (http.Header, error) {
	key, err := hmacKey(secret)
	if err != nil {
		return nil, err
	}
	w := testWebhook{at: time.Now()}
	for _, opt := range opts {
		opt(&w)
	}
	if w.id == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("foreman: cannot make a webhook-id: %w", err)
		}
		w.id = "msg_" + hex.EncodeToString(b[:])
	}
	ts := strconv.FormatInt(w.at.Unix(), 10)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "foreman-webhooks")
	h.Set("webhook-id", w.id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(standardMAC(key, w.id, ts, body)))
	h.Set("X-Foreman-Signature", "sha256="+hex.EncodeToString(legacyMAC(key, body)))
	return h, nil
}
