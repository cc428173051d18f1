package foreman_test

// Unit tests of Run's waiting logic (webhook, polling fallback, cancellation) against a small
// fake of foreman's /jobs routes. integration_test.go runs the same paths against a real foreman.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

// fakeJob is how the fake's one job behaves: it ends `after` its submission.
type fakeJob struct {
	after        time.Duration
	finalState   foreman.State
	inlineResult bool   // whether GET /jobs/{id} carries the result inline
	refuseHooks  bool   // answer a state_webhook_url with foreman's 400
	signWith     string // the secret webhooks are signed with; "" = unsigned
	unavailable  bool   // answer GET /jobs/{id} with 503, as a restarting foreman behind a proxy
}

// fakeForeman serves one fakeJob and records what the client did.
type fakeForeman struct {
	fakeJob
	t *testing.T

	mu         sync.Mutex
	submits    []map[string]any
	submitted  time.Time
	gets       int
	cancelled  bool
	hookStatus []int
}

const fakeResult = `{"model":"m","created_at":"2026-01-02T03:04:07Z","message":{"role":"assistant","content":"forty-two"},"done":true,"done_reason":"stop"}`

func (f *fakeForeman) start() *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	f.t.Cleanup(srv.Close)
	return srv
}

func (f *fakeForeman) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"missing or invalid bearer token"}`)
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/jobs":
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.submits = append(f.submits, body)
		hook, _ := body["state_webhook_url"].(string)
		if hook != "" && f.refuseHooks {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"state_webhook_url host is not in FOREMAN_WEBHOOK_HOSTS"}`)
			return
		}
		f.submitted = time.Now()
		if hook != "" {
			go f.deliver(hook)
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"job_id":%q}`, testJobID)
	case r.Method == "GET" && r.URL.Path == "/jobs/"+string(testJobID) && f.unavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"restarting"}`)
	case r.Method == "GET" && r.URL.Path == "/jobs/"+string(testJobID):
		f.gets++
		json.NewEncoder(w).Encode(f.job())
	case r.Method == "DELETE" && r.URL.Path == "/jobs/"+string(testJobID):
		f.cancelled = true
		job := f.job()
		job["state"] = "cancelled"
		json.NewEncoder(w).Encode(job)
	case r.Method == "GET" && r.URL.Path == "/jobs/"+string(testJobID)+"/artifacts/completion":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, fakeResult)
	default:
		http.NotFound(w, r)
	}
}

// job is the job's view now; the caller holds f.mu.
func (f *fakeForeman) job() map[string]any {
	job := map[string]any{"job_id": testJobID, "state": "queued", "position": 1, "result": nil, "error": nil}
	if f.cancelled {
		job["state"] = "cancelled"
	} else if !f.submitted.IsZero() && time.Since(f.submitted) >= f.after {
		job["state"] = f.finalState
		job["position"] = nil
		switch {
		case f.finalState == foreman.StateFailed:
			job["error"] = "model 'm' crashed"
		case f.inlineResult:
			job["result"] = json.RawMessage(fakeResult)
		}
	}
	return job
}

// deliver posts the terminal event when the job ends, as foreman's dispatcher would.
func (f *fakeForeman) deliver(url string) {
	time.Sleep(f.after)
	body, _ := json.Marshal(map[string]any{"job_id": testJobID, "state": f.finalState, "previous_state": "working"})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if f.signWith != "" {
		for k, v := range signedHeader(f.t, f.signWith, "msg_1", time.Now(), body) {
			req.Header[k] = v
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // Run may have returned already
	}
	resp.Body.Close()
	f.mu.Lock()
	f.hookStatus = append(f.hookStatus, resp.StatusCode)
	f.mu.Unlock()
}

func (f *fakeForeman) snapshot() (submits []map[string]any, gets int, cancelled bool, hookStatus []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.submits, f.gets, f.cancelled, f.hookStatus
}

var chatReq = foreman.ChatRequest{Model: "m", Messages: []foreman.Message{{Role: "user", Content: "?"}}}

func TestRunWaitsForTheJobsEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fake fakeJob
		opts []foreman.Option
		// webhook: whether the accepted submission carried a webhook URL.
		webhook bool
		// maxGets bounds the polls: with a webhook and a long interval only the first GET runs
		// before the event and one after it.
		maxGets    int
		wantHook   []int
		wantState  foreman.State
		wantJobErr bool
	}{
		{
			name:      "a signed webhook ends the wait long before the next poll",
			fake:      fakeJob{after: 300 * time.Millisecond, finalState: foreman.StateDone, inlineResult: true, signWith: "s"},
			opts:      []foreman.Option{foreman.WithPollInterval(time.Minute), foreman.WithWebhookSecret("s")},
			webhook:   true,
			maxGets:   2,
			wantHook:  []int{204},
			wantState: foreman.StateDone,
		},
		{
			name:      "without a secret an event is only a hint to read the job",
			fake:      fakeJob{after: 300 * time.Millisecond, finalState: foreman.StateDone, inlineResult: true},
			opts:      []foreman.Option{foreman.WithPollInterval(time.Minute)},
			webhook:   true,
			maxGets:   2,
			wantHook:  []int{204},
			wantState: foreman.StateDone,
		},
		{
			name:      "a webhook signed with another secret is refused and polling finds the end",
			fake:      fakeJob{after: 300 * time.Millisecond, finalState: foreman.StateDone, inlineResult: true, signWith: "other"},
			opts:      []foreman.Option{foreman.WithPollInterval(50 * time.Millisecond), foreman.WithWebhookSecret("s")},
			webhook:   true,
			wantHook:  []int{401},
			wantState: foreman.StateDone,
		},
		{
			name:      "a webhook host foreman refuses falls back to polling",
			fake:      fakeJob{after: 300 * time.Millisecond, finalState: foreman.StateDone, inlineResult: true, refuseHooks: true},
			opts:      []foreman.Option{foreman.WithPollInterval(50 * time.Millisecond)},
			wantState: foreman.StateDone,
		},
		{
			name:      "no listener and a foreman without event streams: polling, and a large result comes from the artifact",
			fake:      fakeJob{after: 200 * time.Millisecond, finalState: foreman.StateDone},
			opts:      []foreman.Option{foreman.WithPollInterval(50 * time.Millisecond), foreman.WithWebhookAddr("")},
			wantState: foreman.StateDone,
		},
		{
			name:       "a failed job is a *JobError with the job",
			fake:       fakeJob{after: 100 * time.Millisecond, finalState: foreman.StateFailed},
			opts:       []foreman.Option{foreman.WithPollInterval(50 * time.Millisecond)},
			webhook:    true,
			wantState:  foreman.StateFailed,
			wantJobErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeForeman{fakeJob: tt.fake, t: t}
			srv := f.start()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			job, err := foreman.New(srv.URL, "tok", tt.opts...).Run(ctx, chatReq, foreman.WithMetadata(map[string]int{"n": 1}))

			var jobErr *foreman.JobError
			if tt.wantJobErr {
				if !errors.As(err, &jobErr) || jobErr.Job.State != tt.wantState || !strings.Contains(err.Error(), "crashed") {
					t.Fatalf("want a *JobError in state %s naming the cause, got %v", tt.wantState, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if job == nil || job.State != tt.wantState {
				t.Fatalf("job = %+v, want state %s", job, tt.wantState)
			}
			if tt.wantState == foreman.StateDone {
				chat, err := job.ChatResponse()
				if err != nil || chat.Message.Content != "forty-two" {
					t.Errorf("result = %+v, %v", chat, err)
				}
			}
			submits, gets, _, _ := f.snapshot()
			last := submits[len(submits)-1]
			if _, has := last["state_webhook_url"]; has != tt.webhook {
				t.Errorf("accepted submission has a webhook = %v, want %v (%v)", has, tt.webhook, last)
			}
			if last["metadata"] == nil {
				t.Error("the submit options were dropped")
			}
			if tt.maxGets > 0 && gets > tt.maxGets {
				t.Errorf("%d polls, want at most %d: the webhook did not end the wait", gets, tt.maxGets)
			}
			if tt.wantHook != nil {
				deadline := time.Now().Add(2 * time.Second)
				for {
					_, _, _, hookStatus := f.snapshot()
					if fmt.Sprint(hookStatus) == fmt.Sprint(tt.wantHook) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("webhook answers = %v, want %v", hookStatus, tt.wantHook)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

func TestRunCancelsTheJobWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	f := &fakeForeman{fakeJob: fakeJob{after: time.Hour, finalState: foreman.StateDone}, t: t}
	srv := f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := foreman.New(srv.URL, "tok", foreman.WithPollInterval(50*time.Millisecond)).Run(ctx, chatReq)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), string(testJobID)) {
		t.Fatalf("want a deadline error naming the job, got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Run took %s after its context ended", took)
	}
	if _, _, cancelled, _ := f.snapshot(); !cancelled {
		t.Error("the abandoned job was not cancelled")
	}
}

func TestRunRetriesPollsThatMayClearAndReportsTheLastOne(t *testing.T) {
	t.Parallel()
	f := &fakeForeman{fakeJob: fakeJob{after: time.Hour, finalState: foreman.StateDone, unavailable: true}, t: t}
	srv := f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := foreman.New(srv.URL, "tok", foreman.WithPollInterval(20*time.Millisecond)).Run(ctx, chatReq)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last poll") || !strings.Contains(err.Error(), "restarting") {
		t.Fatalf("want a deadline error that names the failing poll, got %v", err)
	}
}

func TestRunStopsOnAnErrorThatWillNotClear(t *testing.T) {
	t.Parallel()
	f := &fakeForeman{fakeJob: fakeJob{after: time.Hour, finalState: foreman.StateDone}, t: t}
	srv := f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := foreman.New(srv.URL, "wrong").Run(ctx, chatReq)
	var se *foreman.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("want a 401 *StatusError, got %v", err)
	}
}

// A secret that can verify nothing would make Run refuse every event and wait for the slow poll
// instead; it is the caller's mistake, reported before anything is queued.
func TestRunRefusesAnUnusableWebhookSecretBeforeSubmitting(t *testing.T) {
	t.Parallel()
	f := &fakeForeman{fakeJob: fakeJob{after: 50 * time.Millisecond, finalState: foreman.StateDone, inlineResult: true}, t: t}
	srv := f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := foreman.New(srv.URL, "tok", foreman.WithWebhookSecret("whsec_"), foreman.WithPollInterval(20*time.Millisecond))
	_, err := c.Run(ctx, chatReq)
	if !errors.Is(err, foreman.ErrSecret) {
		t.Fatalf("want ErrSecret, got %v", err)
	}
	if submits, _, _, _ := f.snapshot(); len(submits) != 0 {
		t.Errorf("%d jobs were submitted", len(submits))
	}
}
