package foreman_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

// Checking a webhook foreman sent. The headers are what foreman adds when
// FOREMAN_WEBHOOK_SECRET is "my-webhook-secret"; the fixed clock stands in for time.Now.
func ExampleVerifyWebhookWithOptions() {
	body := []byte(`{"job_id":"01JGZ8K3V4W5X6Y7Z8A9B0C1D2","state":"done","previous_state":"working"}`)
	header := http.Header{}
	header.Set("X-Foreman-Signature", "sha256=60d37819892a8e4b848941b99fee6d1847aaa4c1703642d11aa07cc08d5fe21a")
	header.Set("webhook-id", "msg_01JGZ8K3V4W5X6Y7Z8A9B0C1D3")
	header.Set("webhook-timestamp", "1767323045") // 2026-01-02T03:04:05Z
	header.Set("webhook-signature", "v1,Hd0QdmiqZ7bq62ZqgoRKMiESDKQcAIg0eIN7ZCw0HKA=")

	sent := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	check := func(label string, body []byte, now time.Time) {
		err := foreman.VerifyWebhookWithOptions(header, body, foreman.VerifyOptions{
			Secrets: []string{"my-webhook-secret"},
			Now:     func() time.Time { return now },
		})
		switch {
		case err == nil:
			fmt.Println(label+":", "verified")
		case errors.Is(err, foreman.ErrInvalidSignature):
			fmt.Println(label+":", "rejected, the signature does not match")
		case errors.Is(err, foreman.ErrTimestamp):
			fmt.Println(label+":", "rejected, too old")
		}
	}
	check("as sent", body, sent.Add(3*time.Second))
	check("tampered", []byte(`{"job_id":"01JGZ8K3V4W5X6Y7Z8A9B0C1D2","state":"failed"}`), sent.Add(3*time.Second))
	check("replayed an hour later", body, sent.Add(time.Hour))

	var ev foreman.WebhookEvent
	_ = json.Unmarshal(body, &ev)
	fmt.Println(ev.JobID, ev.PreviousState, "→", ev.State)
	// Output:
	// as sent: verified
	// tampered: rejected, the signature does not match
	// replayed an hour later: rejected, too old
	// 01JGZ8K3V4W5X6Y7Z8A9B0C1D2 working → done
}

// A receiver for the webhooks of jobs submitted with foreman.WithWebhookURL.
func ExampleVerifyWebhook() {
	secret := os.Getenv("FOREMAN_WEBHOOK_SECRET")
	http.HandleFunc("/foreman-events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := foreman.VerifyWebhook(secret, r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized) // foreman retries; a forger gives up
			return
		}
		var ev foreman.WebhookEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not a foreman event", http.StatusBadRequest)
			return
		}
		// Delivery is at least once: the webhook-id header identifies repeats.
		log.Printf("job %s is %s", ev.JobID, ev.State)
		w.WriteHeader(http.StatusNoContent)
	})
}

// Testing a webhook receiver: SignTestWebhook gives the headers foreman would send, so the
// handler can be driven through httptest with events that verify and events that must not.
func ExampleSignTestWebhook() {
	const secret = "test-secret"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := foreman.VerifyWebhook(secret, r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	send := func(label string, header http.Header, body string) {
		req := httptest.NewRequest(http.MethodPost, "/foreman-events", strings.NewReader(body))
		req.Header = header
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(label+":", rec.Code)
	}

	body := `{"job_id":"01JGZ8K3V4W5X6Y7Z8A9B0C1D2","state":"done","previous_state":"working"}`
	header, err := foreman.SignTestWebhook(secret, []byte(body))
	if err != nil {
		log.Fatal(err)
	}
	stale, _ := foreman.SignTestWebhook(secret, []byte(body), foreman.WithTestWebhookTime(time.Now().Add(-time.Hour)))
	legacyOnly := http.Header{"X-Foreman-Signature": header.Values("X-Foreman-Signature")}

	send("signed", header, body)
	send("tampered", header, strings.Replace(body, "done", "failed", 1))
	send("an hour old", stale, body)
	send("stripped to X-Foreman-Signature", legacyOnly, body)
	// Output:
	// signed: 204
	// tampered: 401
	// an hour old: 401
	// stripped to X-Foreman-Signature: 401
}

// Submit a chat job and wait for its answer. Run listens for the job's webhook and falls back to
// polling when foreman cannot call back.
func ExampleClient_Run() {
	c := foreman.New("http://127.0.0.1:8080", os.Getenv("FOREMAN_TOKEN"),
		foreman.WithWebhookSecret(os.Getenv("FOREMAN_WEBHOOK_SECRET")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	job, err := c.Run(ctx, foreman.ChatRequest{
		Model:    "llama3.2:3b",
		Messages: []foreman.Message{{Role: "user", Content: "Why is the sky blue?"}},
	})
	if err != nil {
		log.Fatal(err) // a *foreman.JobError if the job failed, a *foreman.StatusError if foreman refused it
	}
	answer, err := job.ChatResponse()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(answer.Message.Content)
}

// Fire and forget: foreman posts each state change to your receiver, and the job can be read
// back at any time.
func ExampleClient_Submit() {
	c := foreman.New("http://127.0.0.1:8080", os.Getenv("FOREMAN_TOKEN"))
	ctx := context.Background()

	id, err := c.Submit(ctx, foreman.GenerateRequest{Model: "llama3.2:3b", Prompt: "Write a haiku about queues."},
		foreman.WithWebhookURL("http://10.0.0.5:9000/foreman-events"),
		foreman.WithMetadata(map[string]string{"ticket": "OPS-42"}),
		foreman.WithIdempotencyKey("OPS-42-haiku"), // a retried Submit returns the same job
	)
	var se *foreman.StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		log.Fatalf("the target has no such model: %s", se.ErrorMessage)
	} else if err != nil {
		log.Fatal(err)
	}

	job, err := c.Get(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.State, job.Position)
}

// Any Ollama client works through foreman once its requests carry the token; here plain
// net/http, the way go-llm's Ollama provider talks to it. BaseURL keeps the token on foreman's
// host: a request anywhere else, or a redirect there, goes without it.
func ExampleBearerTransport() {
	const foremanURL = "http://127.0.0.1:8080"
	hc := &http.Client{Transport: &foreman.BearerTransport{
		Token:   os.Getenv("FOREMAN_TOKEN"),
		BaseURL: foremanURL,
	}}
	resp, err := hc.Get(foremanURL + "/api/tags")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var tags foreman.TagsResponse
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		log.Fatal(err)
	}
	for _, m := range tags.Models {
		fmt.Println(m.Name)
	}
}
