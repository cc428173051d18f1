// Client.Watch: follow a job on its event stream (GET /jobs/{id}/events, Server-Sent Events)
// over the caller's own connection, resuming with Last-Event-ID when the connection breaks. It
// needs no reachable listener, which is what Client.Run falls back to when webhooks cannot
// reach it.
package foreman

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// EventProgress is the Type of a progress event.
const EventProgress = "progress"

// Event is one event of a job's stream: a state change (the same body as the webhook event) or,
// while the job works, its progress.
type Event struct {
	// ID is the event's id, the same as the webhook-id of that event; empty for progress events,
	// which are never replayed.
	ID string
	// Type is the state the job entered, or [EventProgress]. A type this client does not know
	// (from a newer foreman) comes with Data alone.
	Type string
	// Change is set for a state change: the webhook event's body.
	Change *WebhookEvent
	// Progress is set for a progress event.
	Progress *Progress
	// Data is the event's data as sent.
	Data json.RawMessage
}

// Progress is how far a working job has got. Tokens counts the chunks the target has streamed
// (one per generated token) where its answer streams: a sync job whose caller streams. For other
// jobs only Elapsed is known and Tokens and TokensPerSecond are nil.
type Progress struct {
	JobID           JobID
	Tokens          *int
	TokensPerSecond *float64
	// Elapsed is the time since the job entered working.
	Elapsed time.Duration
}

// silenceLimit is how long a stream may say nothing before it counts as cut: foreman sends a
// comment every 15 seconds, so three missed ones.
const silenceLimit = 45 * time.Second

// maxEventSize bounds one event: a done event carries the result and inline artifacts, which
// FOREMAN_INLINE_LIMIT may make large.
const maxEventSize = 256 << 20

// Watch follows job id until it ends, calling fn with each event in order: first the job's
// current state (its latest event), then every change, with progress events while the job
// works. It returns nil after fn has seen the terminal event (done, failed or cancelled), fn's
// error if fn returns one, or ctx's error.
//
// A dropped connection, a 5xx or a 429 (foreman restarting, or too many watchers) is retried
// with backoff, resuming after the last event seen, so fn sees every change once and in order.
// Other error statuses end the wait as a *[StatusError], such as 404 for an unknown job.
func (c *Client) Watch(ctx context.Context, id JobID, fn func(Event) error) error {
	return c.watch(ctx, id, fn, false)
}

// watch is Watch; with stopOnStatus, any error status when opening the stream ends it at once,
// for Run, which then polls instead.
func (c *Client) watch(ctx context.Context, id JobID, fn func(Event) error, stopOnStatus bool) error {
	var lastID string
	var lastErr error
	delay := 250 * time.Millisecond
	for {
		progressed, done, err := c.watchOnce(ctx, id, &lastID, fn)
		if done {
			return nil
		}
		var se *StatusError
		var fnErr *callbackError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case ctx.Err() != nil:
			if lastErr != nil {
				return fmt.Errorf("foreman: stopped watching job %s: %w (last error: %v)", id, ctx.Err(), lastErr)
			}
			return fmt.Errorf("foreman: stopped watching job %s: %w", id, ctx.Err())
		case errors.As(err, &se) && (stopOnStatus || se.StatusCode < 500 && se.StatusCode != http.StatusTooManyRequests):
			return err
		}
		if err != nil {
			lastErr = err
		}
		if progressed {
			delay = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// callbackError carries fn's error out of the stream reader unchanged.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// watchOnce reads the stream once, from after *lastID. It reports whether any event arrived,
// whether the terminal one was seen (or foreman said there is nothing after *lastID: 204), and
// why it stopped otherwise.
func (c *Client) watchOnce(ctx context.Context, id JobID, lastID *string, fn func(Event) error) (progressed, done bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, jobPath(id)+"/events", nil, nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := c.send(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return false, true, nil
	}
	// The body is read under a watchdog: silence past silenceLimit cancels the request.
	watchdog := time.AfterFunc(silenceLimit, cancel)
	defer watchdog.Stop()
	err = readEvents(&watchdogReader{r: resp.Body, t: watchdog}, func(e sseEvent) error {
		event, err := decodeEvent(e)
		if err != nil {
			return err
		}
		progressed = true
		if event.ID != "" {
			*lastID = event.ID
		}
		if err := fn(event); err != nil {
			return &callbackError{err}
		}
		if event.Change != nil && event.Change.State.Terminal() {
			done = true
			return errStop
		}
		return nil
	})
	if done {
		return progressed, true, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF // foreman ended the stream before the job ended: it is stopping
	}
	return progressed, false, fmt.Errorf("foreman: event stream of job %s: %w", id, err)
}

// errStop ends readEvents without an error.
var errStop = errors.New("stop")

func decodeEvent(e sseEvent) (Event, error) {
	event := Event{ID: e.id, Type: e.event, Data: e.data}
	switch State(e.event) {
	case StateQueued, StateLoading, StateWorking, StateDone, StateFailed, StateCancelled:
		var change WebhookEvent
		if err := json.Unmarshal(e.data, &change); err != nil {
			return event, fmt.Errorf("cannot decode a %q event: %w", e.event, err)
		}
		event.Change = &change
	case EventProgress:
		var p struct {
			JobID           JobID    `json:"job_id"`
			Tokens          *int     `json:"tokens"`
			TokensPerSecond *float64 `json:"tokens_per_second"`
			ElapsedMS       int64    `json:"elapsed_ms"`
		}
		if err := json.Unmarshal(e.data, &p); err != nil {
			return event, fmt.Errorf("cannot decode a progress event: %w", err)
		}
		event.Progress = &Progress{JobID: p.JobID, Tokens: p.Tokens, TokensPerSecond: p.TokensPerSecond, Elapsed: time.Duration(p.ElapsedMS) * time.Millisecond}
	}
	return event, nil
}

// sseEvent is one Server-Sent Event as read from the wire.
type sseEvent struct {
	id, event string
	data      []byte
}

// readEvents parses a text/event-stream body and calls fn with each event. Comments (foreman's
// heartbeat) are skipped; a line may end in LF or CRLF. It returns nil at the end of the
// body, and stops with fn's error; errStop stops it without one.
func readEvents(r io.Reader, fn func(sseEvent) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var e sseEvent
	var data [][]byte
	size := 0
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // an event without its blank line is incomplete: dropped, as browsers do
			}
			return err
		}
		if len(line) == 0 {
			if data != nil {
				e.data = bytes.Join(data, []byte("\n"))
				if e.event == "" {
					e.event = "message"
				}
				if err := fn(e); err != nil {
					if errors.Is(err, errStop) {
						return nil
					}
					return err
				}
			}
			e, data, size = sseEvent{}, nil, 0
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			size += len(value)
			if size > maxEventSize {
				return fmt.Errorf("an event is larger than %d bytes", maxEventSize)
			}
			data = append(data, bytes.Clone(value))
		case "id":
			e.id = string(value)
		case "event":
			e.event = string(value)
		}
	}
}

// readLine reads one line without its end (LF or CRLF).
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxEventSize {
			return nil, fmt.Errorf("a line is longer than %d bytes", maxEventSize)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			// A last line without its end: the stream was cut in the middle of it.
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// watchdogReader pushes its timer back on every read that brings bytes.
type watchdogReader struct {
	r io.Reader
	t *time.Timer
}

func (w *watchdogReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.t.Reset(silenceLimit)
	}
	return n, err
}
