package foreman_test

// Level 1: the client against a real foreman process in front of the project's Ollama simulator
// (internal/testenv starts both; without deno or the daemon's files these tests skip).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
)

// slowOptions make the simulator take seconds over a job (2 ms a token), so it can be cancelled
// mid-way.
var slowOptions = map[string]any{"num_predict": 5000}

func chat(model, text string) foreman.ChatRequest {
	return foreman.ChatRequest{
		Model:    model,
		Messages: []foreman.Message{{Role: "user", Content: text}},
		Options:  map[string]any{"num_predict": 8, "seed": 1, "temperature": 0},
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClientAgainstARealForeman(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	model, embedModel := f.Models(t)
	client := func(opts ...foreman.Option) *foreman.Client {
		return foreman.New(f.URL, f.Token, opts...)
	}

	t.Run("Run returns on the signed state webhook, not on a poll", func(t *testing.T) {
		t.Parallel()
		// Polling every ten minutes (ten times the interval while a webhook is registered) would
		// outlast the context: only the webhook can end this wait in time.
		c := client(foreman.WithPollInterval(time.Minute), foreman.WithWebhookSecret(f.WebhookSecret))
		job, err := c.Run(testCtx(t, 60*time.Second), chat(model, "webhook please"))
		if err != nil {
			t.Fatal(err)
		}
		answer, err := job.ChatResponse()
		if err != nil {
			t.Fatal(err)
		}
		if !answer.Done || answer.Message.Role != "assistant" {
			t.Errorf("result = %+v", answer)
		}
		if job.Webhook == nil || !strings.HasPrefix(job.Webhook.URL, "http://127.0.0.1:") {
			t.Errorf("the job was not submitted with Run's listener: webhook = %+v", job.Webhook)
		}
	})

	t.Run("Run polls when it has no listener", func(t *testing.T) {
		t.Parallel()
		c := client(foreman.WithWebhookAddr(""), foreman.WithPollInterval(100*time.Millisecond))
		job, err := c.Run(testCtx(t, 60*time.Second), chat(model, "poll please"))
		if err != nil {
			t.Fatal(err)
		}
		if job.State != foreman.StateDone || job.Webhook != nil {
			t.Errorf("job = %+v, want done without a webhook", job)
		}
	})

	t.Run("Run refuses webhooks signed with another secret and still ends by polling", func(t *testing.T) {
		t.Parallel()
		c := client(foreman.WithWebhookSecret("not-"+f.WebhookSecret), foreman.WithPollInterval(100*time.Millisecond))
		job, err := c.Run(testCtx(t, 60*time.Second), chat(model, "wrong secret"))
		if err != nil {
			t.Fatal(err)
		}
		if job.State != foreman.StateDone {
			t.Fatalf("state = %s", job.State)
		}
		// foreman saw the refusals: its delivery record says so.
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := c.Get(testCtx(t, 5*time.Second), job.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Webhook != nil && strings.Contains(got.Webhook.LastError, "401") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("foreman never recorded the listener's 401: webhook = %+v", got.Webhook)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("webhook events verify, decode and follow the state machine", func(t *testing.T) {
		t.Parallel()
		type delivery struct {
			header http.Header
			body   []byte
		}
		got := make(chan delivery, 32)
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			got <- delivery{r.Header.Clone(), body}
			w.WriteHeader(http.StatusNoContent)
		}))
		t.Cleanup(recv.Close)
		c := client()
		ctx := testCtx(t, 60*time.Second)
		id, err := c.Submit(ctx, chat(model, "events"), foreman.WithWebhookURL(recv.URL+"/events"),
			foreman.WithMetadata(map[string]string{"ticket": "OPS-1"}))
		if err != nil {
			t.Fatal(err)
		}
		var events []foreman.WebhookEvent
		for len(events) == 0 || !events[len(events)-1].State.Terminal() {
			var d delivery
			select {
			case d = <-got:
			case <-ctx.Done():
				t.Fatalf("no terminal event; got %+v", events)
			}
			if err := foreman.VerifyWebhook(f.WebhookSecret, d.header, d.body); err != nil {
				t.Fatalf("event does not verify: %v\nheaders %v\nbody %s", err, d.header, d.body)
			}
			// The replay of a captured event without its timestamped headers is refused, though
			// its legacy signature is right.
			stripped := http.Header{"X-Foreman-Signature": d.header.Values("X-Foreman-Signature")}
			if err := foreman.VerifyWebhook(f.WebhookSecret, stripped, d.body); !errors.Is(err, foreman.ErrNoSignature) {
				t.Errorf("an event stripped to X-Foreman-Signature: want ErrNoSignature, got %v", err)
			}
			legacy := foreman.VerifyOptions{Secrets: []string{f.WebhookSecret}, AllowLegacySignature: true}
			if err := foreman.VerifyWebhookWithOptions(stripped, d.body, legacy); err != nil {
				t.Errorf("X-Foreman-Signature of a real event does not verify when allowed: %v", err)
			}
			// SignTestWebhook, given the event's id and time, reproduces foreman's signatures.
			sec, _ := strconv.ParseInt(d.header.Get("webhook-timestamp"), 10, 64)
			same, err := foreman.SignTestWebhook(f.WebhookSecret, d.body,
				foreman.WithTestWebhookID(d.header.Get("webhook-id")), foreman.WithTestWebhookTime(time.Unix(sec, 0)))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"webhook-signature", "X-Foreman-Signature", "Content-Type", "User-Agent"} {
				if same.Get(k) != d.header.Get(k) {
					t.Errorf("SignTestWebhook's %s is %q, foreman sent %q", k, same.Get(k), d.header.Get(k))
				}
			}
			if !strings.HasPrefix(d.header.Get("webhook-id"), "msg_") {
				t.Errorf("webhook-id = %q, want msg_<ULID>", d.header.Get("webhook-id"))
			}
			var ev foreman.WebhookEvent
			if err := json.Unmarshal(d.body, &ev); err != nil {
				t.Fatalf("event does not decode: %v\n%s", err, d.body)
			}
			events = append(events, ev)
		}
		for i, ev := range events {
			if ev.JobID != id || ev.Timestamp.IsZero() || string(ev.Metadata) != `{"ticket":"OPS-1"}` {
				t.Errorf("event %d = %+v", i, ev)
			}
			if i > 0 && ev.PreviousState != events[i-1].State {
				t.Errorf("event %d: previous_state %s after an event for %s", i, ev.PreviousState, events[i-1].State)
			}
		}
		last := events[len(events)-1]
		if last.State != foreman.StateDone || len(last.Result) == 0 || string(last.Result) == "null" ||
			len(last.Artifacts) == 0 || last.Artifacts[0].Name != foreman.CompletionArtifact {
			t.Errorf("the done event lacks its result or artifacts: %+v", last)
		}
	})

	t.Run("Cancel ends a queued and a running job", func(t *testing.T) {
		t.Parallel()
		c := client()
		ctx := testCtx(t, 60*time.Second)
		slow := chat(model, "take your time")
		slow.Options = slowOptions
		running, err := c.Submit(ctx, slow)
		if err != nil {
			t.Fatal(err)
		}
		queued, err := c.Submit(ctx, slow) // the one worker is busy with the first
		if err != nil {
			t.Fatal(err)
		}
		waitForState(t, c, running, foreman.StateLoading, foreman.StateWorking)

		for _, id := range []foreman.JobID{queued, running} {
			job, err := c.Cancel(ctx, id)
			if err != nil {
				t.Fatalf("cancel %s: %v", id, err)
			}
			if job.State != foreman.StateCancelled || job.FinishedAt == nil {
				t.Errorf("cancelled job = %+v", job)
			}
			_, err = c.Cancel(ctx, id)
			var se *foreman.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusConflict {
				t.Errorf("cancelling a cancelled job: want a 409 *StatusError, got %v", err)
			}
		}
	})

	t.Run("a small completion is inline and equals its artifact", func(t *testing.T) {
		t.Parallel()
		c := client()
		ctx := testCtx(t, 60*time.Second)
		job, err := c.Run(ctx, chat(model, "inline"))
		if err != nil {
			t.Fatal(err)
		}
		a := artifactNamed(t, job, foreman.CompletionArtifact)
		if a.Inline == nil || a.ContentType != "application/json" || a.URL == "" {
			t.Fatalf("completion artifact = %+v, want it inline", a)
		}
		data, err := c.Artifact(ctx, job.ID, a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if string(data.Data) != *a.Inline || data.SHA256 != a.SHA256 || int64(len(data.Data)) != a.Size {
			t.Errorf("downloaded artifact differs from its description: %+v vs %d bytes %s", a, len(data.Data), data.SHA256)
		}
		assertSameJSON(t, job.Result, data.Data)
	})

	t.Run("a generate job", func(t *testing.T) {
		t.Parallel()
		job, err := client().Run(testCtx(t, 60*time.Second), foreman.GenerateRequest{
			Model: model, Prompt: "once upon a time", Options: map[string]any{"num_predict": 8},
		})
		if err != nil {
			t.Fatal(err)
		}
		gen, err := job.GenerateResponse()
		if err != nil {
			t.Fatal(err)
		}
		if job.Endpoint != "generate" || !gen.Done {
			t.Errorf("job %+v, result %+v", job, gen)
		}
	})

	t.Run("a wrong token is a 401 *StatusError", func(t *testing.T) {
		t.Parallel()
		c := foreman.New(f.URL, "wrong-token")
		ctx := testCtx(t, 30*time.Second)
		calls := map[string]func() error{
			"Submit": func() error { _, err := c.Submit(ctx, chat(model, "x")); return err },
			"Run":    func() error { _, err := c.Run(ctx, chat(model, "x")); return err },
			"List":   func() error { _, err := c.List(ctx, foreman.ListOptions{}); return err },
			"Tags":   func() error { _, err := c.Tags(ctx); return err },
		}
		for name, call := range calls {
			err := call()
			var se *foreman.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || se.ErrorMessage == "" {
				t.Errorf("%s: want a 401 *StatusError with foreman's message, got %#v", name, err)
			}
		}
	})

	t.Run("an unknown model is a 404 *StatusError at submit", func(t *testing.T) {
		t.Parallel()
		_, err := client().Submit(testCtx(t, 30*time.Second), chat("no-such-model:7b", "x"))
		var se *foreman.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Errorf("want a 404 *StatusError, got %v", err)
		}
	})

	t.Run("an idempotency key returns the first job, and 409 for another body", func(t *testing.T) {
		t.Parallel()
		c := client()
		ctx := testCtx(t, 30*time.Second)
		key := foreman.WithIdempotencyKey(fmt.Sprintf("key-%d", time.Now().UnixNano()))
		first, err := c.Submit(ctx, chat(model, "once"), key)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Submit(ctx, chat(model, "once"), key)
		if err != nil || again != first {
			t.Errorf("repeat = %q, %v; want %q", again, err, first)
		}
		_, err = c.Submit(ctx, chat(model, "twice"), key)
		var se *foreman.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusConflict {
			t.Errorf("another body: want a 409 *StatusError, got %v", err)
		}
	})

	t.Run("List pages newest first", func(t *testing.T) {
		t.Parallel()
		c := client()
		ctx := testCtx(t, 30*time.Second)
		var ids []foreman.JobID
		for i := 0; i < 3; i++ {
			id, err := c.Submit(ctx, chat(model, fmt.Sprintf("list %d", i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		page, err := c.List(ctx, foreman.ListOptions{Limit: 2, Model: model})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Jobs) != 2 || page.Next == "" || page.Jobs[0].ID <= page.Jobs[1].ID {
			t.Fatalf("first page = %d jobs, next %q: %v", len(page.Jobs), page.Next, jobIDs(page.Jobs))
		}
		rest, err := c.List(ctx, foreman.ListOptions{Limit: 500, Before: page.Next})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[foreman.JobID]bool{}
		for _, j := range append(page.Jobs, rest.Jobs...) {
			seen[j.ID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				t.Errorf("job %s is on neither page", id)
			}
		}
		if len(rest.Jobs) > 0 && rest.Jobs[0].ID >= page.Next {
			t.Errorf("the second page starts at %s, not before %s", rest.Jobs[0].ID, page.Next)
		}
	})

	t.Run("Tags, Embed and streaming Chat", func(t *testing.T) {
		t.Parallel()
		c := client()
		ctx := testCtx(t, 60*time.Second)
		tags, err := c.Tags(ctx)
		if err != nil || len(tags.Models) == 0 {
			t.Fatalf("tags = %+v, %v", tags, err)
		}
		emb, err := c.Embed(ctx, foreman.EmbedRequest{Model: embedModel, Input: []string{"a", "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(emb.Embeddings) != 2 || len(emb.Embeddings[0]) == 0 {
			t.Errorf("embeddings = %+v", emb)
		}
		var chunks int
		var text strings.Builder
		err = c.Chat(ctx, chat(model, "stream"), func(r foreman.ChatResponse) error {
			chunks++
			text.WriteString(r.Message.Content)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if chunks < 2 {
			t.Errorf("%d chunks, want a stream", chunks)
		}
	})
}

func TestArtifactsAboveTheInlineLimitTravelByURL(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{Args: []string{"--inline-limit", "64"}})
	model, _ := f.Models(t)
	c := foreman.New(f.URL, f.Token)
	ctx := testCtx(t, 60*time.Second)

	id, err := c.Submit(ctx, chat(model, "too big to inline"))
	if err != nil {
		t.Fatal(err)
	}
	waitForState(t, c, id, foreman.StateDone)
	job, err := c.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(job.Result) != "null" {
		t.Errorf("a result above the inline limit must be null in GET /jobs/{id}, got %s", job.Result)
	}
	a := artifactNamed(t, job, foreman.CompletionArtifact)
	if a.Inline != nil || a.Size <= 64 || !strings.HasSuffix(a.URL, "/jobs/"+string(id)+"/artifacts/completion") {
		t.Errorf("completion artifact = %+v, want only a URL", a)
	}
	data, err := c.Artifact(ctx, id, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data.Data)
	if hex.EncodeToString(sum[:]) != a.SHA256 || data.ContentType != a.ContentType {
		t.Errorf("downloaded %d bytes of %s, want sha256 %s", len(data.Data), data.ContentType, a.SHA256)
	}

	// Run hides the difference: it reads the result from the artifact.
	ran, err := c.Run(ctx, chat(model, "too big to inline, via Run"))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := ran.ChatResponse()
	if err != nil || !answer.Done {
		t.Errorf("Run's result = %+v, %v", answer, err)
	}
}

func TestRunFollowsTheEventStreamWhenForemanRefusesTheWebhookHost(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{WebhookHosts: "-"})
	model, _ := f.Models(t)
	// A poll a minute would outlast the context: only the event stream can end this wait.
	c := foreman.New(f.URL, f.Token, foreman.WithPollInterval(time.Minute))
	ctx := testCtx(t, 45*time.Second)

	// What Run does under the hood: foreman refuses the listener's URL with a 400.
	_, err := c.Submit(ctx, chat(model, "x"), foreman.WithWebhookURL("http://127.0.0.1:9/hook"))
	var se *foreman.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || !strings.Contains(se.ErrorMessage, "FOREMAN_WEBHOOK_HOSTS") {
		t.Fatalf("want a 400 naming FOREMAN_WEBHOOK_HOSTS, got %v", err)
	}
	job, err := c.Run(ctx, chat(model, "stream instead"))
	if err != nil {
		t.Fatal(err)
	}
	if job.State != foreman.StateDone || job.Webhook != nil {
		t.Errorf("job = %+v, want done without a webhook", job)
	}
}

func TestAnUnreachableForemanIsAClearErrorWithinTheContext(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	model, _ := f.Models(t)
	c := foreman.New(f.URL, f.Token, foreman.WithPollInterval(100*time.Millisecond))
	id, err := c.Submit(testCtx(t, 30*time.Second), chat(model, "before the outage"))
	if err != nil {
		t.Fatal(err)
	}
	f.Stop()

	_, err = c.Get(testCtx(t, 10*time.Second), id)
	if err == nil || !strings.Contains(err.Error(), "cannot reach "+f.URL) {
		t.Errorf("Get: want an error saying foreman cannot be reached, got %v", err)
	}
	var se *foreman.StatusError
	if errors.As(err, &se) {
		t.Errorf("an unreachable foreman is not a status error: %v", err)
	}

	// Run keeps trying (foreman may be restarting) until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Run(ctx, chat(model, "during the outage"))
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("Run: want a cannot-reach error, got %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Run took %s with a 500ms context", took)
	}
}

// waitForState polls until job id is in one of states.
func waitForState(t *testing.T, c *foreman.Client, id foreman.JobID, states ...foreman.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *foreman.Job
	for time.Now().Before(deadline) {
		job, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		last = job
		for _, s := range states {
			if job.State == s {
				return
			}
		}
		if job.State.Terminal() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s never reached %v: %+v", id, states, last)
}

func artifactNamed(t *testing.T, job *foreman.Job, name string) foreman.Artifact {
	t.Helper()
	for _, a := range job.Artifacts {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("job %s has no %q artifact: %+v", job.ID, name, job.Artifacts)
	return foreman.Artifact{}
}

func assertSameJSON(t *testing.T, a, b []byte) {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if fmt.Sprint(x) != fmt.Sprint(y) {
		t.Errorf("JSON differs:\n%s\n%s", a, b)
	}
}

func jobIDs(jobs []foreman.Job) []foreman.JobID {
	ids := make([]foreman.JobID, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}
