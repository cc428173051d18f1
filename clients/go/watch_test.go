package foreman_test

// Unit tests of Watch's stream reading (framing, resuming, refusals) against httptest servers
// that speak foreman's text/event-stream; integration_test.go watches a real foreman.

import (
	"context"
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

// sseEvent is one event as foreman writes it.
func sseEvent(id, state, previous string) string {
	prev := "null"
	if previous != "" {
		prev = `"` + previous + `"`
	}
	return fmt.Sprintf("id: %s\nevent: %s\ndata: {\"job_id\":%q,\"state\":%q,\"previous_state\":%s}\n\n", id, state, testJobID, state, prev)
}

const progressEvent = "event: progress\ndata: {\"job_id\":\"" + string(testJobID) + "\",\"state\":\"working\",\"tokens\":12,\"tokens_per_second\":24.5,\"elapsed_ms\":490}\n\n"

// watchAll watches the test job and returns what fn saw, as "type id" strings.
func watchAll(t *testing.T, url string, timeout time.Duration) ([]string, []foreman.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var seen []string
	var events []foreman.Event
	err := foreman.New(url, "tok").Watch(ctx, testJobID, func(e foreman.Event) error {
		seen = append(seen, strings.TrimSpace(e.Type+" "+e.ID))
		events = append(events, e)
		return nil
	})
	return seen, events, err
}

func TestWatchReadsEventsHoweverTheyAreCut(t *testing.T) {
	t.Parallel()
	stream := ": keep-alive\n\n" + sseEvent("msg_1", "queued", "") +
		strings.ReplaceAll(sseEvent("msg_2", "working", "queued"), "\n", "\r\n") +
		progressEvent + "data: {\"a\":\ndata: 1}\nevent: news\n\n" + sseEvent("msg_3", "done", "working") +
		sseEvent("msg_4", "never", "done")
	for _, size := range []int{1, 7, len(stream)} {
		t.Run(fmt.Sprintf("pieces of %d bytes", size), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/jobs/"+string(testJobID)+"/events" {
					http.Error(w, "wrong request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				for i := 0; i < len(stream); i += size {
					io.WriteString(w, stream[i:min(i+size, len(stream))])
					w.(http.Flusher).Flush()
				}
			}))
			defer srv.Close()
			seen, events, err := watchAll(t, srv.URL, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"queued msg_1", "working msg_2", "progress", "news", "done msg_3"}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("saw %q, want %q", seen, want)
			}
			if c := events[1].Change; c == nil || c.State != foreman.StateWorking || c.PreviousState != foreman.StateQueued {
				t.Errorf("working event = %+v", c)
			}
			p := events[2].Progress
			if p == nil || *p.Tokens != 12 || *p.TokensPerSecond != 24.5 || p.Elapsed != 490*time.Millisecond || p.JobID != testJobID {
				t.Errorf("progress = %+v", p)
			}
			if e := events[3]; string(e.Data) != "{\"a\":\n1}" || e.Change != nil || e.Progress != nil {
				t.Errorf("an event of an unknown type = %+v, want its data lines joined, alone", e)
			}
		})
	}
}

func TestWatchResumesAfterADroppedConnectionWithoutRepeatingAnEvent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		n := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1:
			io.WriteString(w, sseEvent("msg_1", "queued", "")+sseEvent("msg_2", "loading", "queued")+"id: msg_3\nevent: work")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection drops mid-event
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable) // foreman restarting
		default:
			io.WriteString(w, sseEvent("msg_3", "working", "loading")+sseEvent("msg_4", "done", "working"))
		}
	}))
	defer srv.Close()
	seen, _, err := watchAll(t, srv.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[queued msg_1 loading msg_2 working msg_3 done msg_4]"; fmt.Sprint(seen) != want {
		t.Errorf("saw %v, want %s", seen, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(lastIDs) != "[ msg_2 msg_2]" {
		t.Errorf("Last-Event-ID sent = %q, want none, then msg_2 twice", lastIDs)
	}
}

func TestWatchEndsOnA204AndOnRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr func(error) bool
	}{
		{"204: the job ended and nothing came after", http.StatusNoContent, "", func(err error) bool { return err == nil }},
		{"404: an unknown job", http.StatusNotFound, `{"error":"job x not found"}`, func(err error) bool {
			var se *foreman.StatusError
			return errors.As(err, &se) && se.StatusCode == 404 && se.ErrorMessage == "job x not found"
		}},
		{"400: an id that is not the job's", http.StatusBadRequest, `{"error":"invalid Last-Event-ID"}`, func(err error) bool {
			var se *foreman.StatusError
			return errors.As(err, &se) && se.StatusCode == 400
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := fakeServer(t, tt.status, tt.body)
			_, _, err := watchAll(t, srv.URL, 5*time.Second)
			if !tt.wantErr(err) {
				t.Errorf("Watch = %v", err)
			}
		})
	}
}

func TestWatchReturnsTheCallbacksErrorAndHonoursTheContext(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, sseEvent("msg_1", "queued", ""))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the job never changes
	}))
	defer srv.Close()
	c := foreman.New(srv.URL, "tok")
	mine := errors.New("enough")
	err := c.Watch(context.Background(), testJobID, func(foreman.Event) error { return mine })
	if err != mine {
		t.Errorf("Watch = %v, want the callback's error itself", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Watch(ctx, testJobID, func(foreman.Event) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), string(testJobID)) {
		t.Errorf("Watch = %v, want the deadline, naming the job", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Watch took %s after its context ended", took)
	}
}
