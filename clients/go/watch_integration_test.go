package foreman_test

// Watch and Run's event stream against a real foreman process in front of the simulator.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
)

func TestWatchAgainstARealForeman(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	model, _ := f.Models(t)
	c := foreman.New(f.URL, f.Token)

	t.Run("a job is followed to its end: every change once, in order, with progress while it works", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t, 60*time.Second)
		// About three seconds at the simulator's 2 ms a token: long enough for progress events.
		req := chat(model, "watch me")
		req.Options = map[string]any{"num_predict": 1500}
		id, err := c.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var changes []*foreman.WebhookEvent
		var ids []string
		progress := 0
		err = c.Watch(ctx, id, func(e foreman.Event) error {
			switch {
			case e.Change != nil:
				changes = append(changes, e.Change)
				ids = append(ids, e.ID)
			case e.Progress != nil:
				progress++
				if e.Progress.Tokens != nil || e.Progress.Elapsed <= 0 || e.Progress.JobID != id {
					t.Errorf("an async job's progress has elapsed time only: %+v", e.Progress)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if last := changes[len(changes)-1]; last.State != foreman.StateDone || len(last.Result) == 0 {
			t.Fatalf("last change = %+v, want done with its result", last)
		}
		for i, ch := range changes {
			if ch.JobID != id || !strings.HasPrefix(ids[i], "msg_") {
				t.Errorf("change %d = %+v (id %q)", i, ch, ids[i])
			}
			if i > 0 && ch.PreviousState != changes[i-1].State {
				t.Errorf("change %d comes from %s, but the one before entered %s", i, ch.PreviousState, changes[i-1].State)
			}
		}
		if progress == 0 {
			t.Error("no progress event while the job worked")
		}

		// A finished job: its last event, and Watch returns.
		var again []foreman.Event
		if err := c.Watch(ctx, id, func(e foreman.Event) error { again = append(again, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(again) != 1 || again[0].ID != ids[len(ids)-1] {
			t.Errorf("watching a done job gave %+v, want its last event %s", again, ids[len(ids)-1])
		}
	})

	t.Run("an unknown job is a 404 *StatusError", func(t *testing.T) {
		t.Parallel()
		err := c.Watch(testCtx(t, 10*time.Second), "01HF7YAT00QJ9A35Z6DQVV42M1", func(foreman.Event) error { return nil })
		var se *foreman.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Errorf("Watch = %v, want a 404", err)
		}
	})

	t.Run("Run without a webhook listener ends on the event stream, not on a poll", func(t *testing.T) {
		t.Parallel()
		c := foreman.New(f.URL, f.Token, foreman.WithWebhookAddr(""), foreman.WithPollInterval(time.Minute))
		// A poll a minute would outlast the context: only the event stream can end this wait.
		ctx := testCtx(t, 45*time.Second)
		job, err := c.Run(ctx, chat(model, "no listener"))
		if err != nil {
			t.Fatal(err)
		}
		if job.State != foreman.StateDone || job.Webhook != nil {
			t.Errorf("job = %+v, want done without a webhook", job)
		}
	})

	t.Run("Run cancels its job when the context ends while it watches", func(t *testing.T) {
		t.Parallel()
		c := foreman.New(f.URL, f.Token, foreman.WithWebhookAddr(""))
		req := chat(model, "too slow")
		req.Options = slowOptions
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Run(ctx, req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want the deadline", err)
		}
		list, err := c.List(testCtx(t, 10*time.Second), foreman.ListOptions{State: foreman.StateCancelled})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Jobs) == 0 {
			t.Error("the abandoned job was not cancelled")
		}
	})
}
