// Client.Run: submit a job and wait for its end. foreman's state webhook arrives on a listener
// that lives as long as the call; where none can, the job's event stream says when it ends;
// polling GET /jobs/{id} covers what neither can.
package foreman

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// JobError is what [Client.Run] returns for a job that ended failed or cancelled.
type JobError struct {
	Job *Job
}

func (e *JobError) Error() string {
	if e.Job.Error == "" {
		return fmt.Sprintf("foreman: job %s ended %s", e.Job.ID, e.Job.State)
	}
	return fmt.Sprintf("foreman: job %s ended %s: %s", e.Job.ID, e.Job.State, e.Job.Error)
}

// webhookPollFactor slows polling while a webhook is registered: the poll then only covers
// events that never arrive (a firewall, a secret mismatch).
const webhookPollFactor = 10

// Run submits req and blocks until the job ends. It returns the done job with Result filled in,
// even when the result was too large to travel inline (it is then read from the completion
// artifact). A failed or cancelled job returns the job and a *[JobError].
//
// Run learns of the end from foreman's state webhook, received on a listener that exists for
// this call only (see [WithWebhookAddr]; signatures are checked with [WithWebhookSecret]); if
// the events do not arrive, a slow poll of GET /jobs/{id} finds the end. When no listener can be
// used (foreman on another host, or it refuses the listener's URL) Run follows the job's event
// stream instead ([Client.Watch]), over its own connection. Only a foreman that will not stream
// the job (one from before event streams, or one with too many watchers) is polled every poll
// interval ([WithPollInterval]). A webhook given with [WithWebhookURL] replaces the listener, and
// Run follows the event stream.
//
// If ctx ends first, Run cancels the job (it has no other owner) and returns ctx's error.
func (c *Client) Run(ctx context.Context, req JobRequest, opts ...SubmitOption) (*Job, error) {
	var cfg submitConfig
	for _, opt := range opts {
		opt(&cfg)
	}

	var hook *webhookListener
	if cfg.webhookURL == "" {
		if addr, ok := c.listenAddr(); ok {
			var err error
			if hook, err = c.listen(addr); err != nil {
				return nil, err
			}
		}
	}
	defer func() {
		if hook != nil {
			hook.close()
		}
	}()

	var id JobID
	var err error
	if hook != nil {
		id, err = c.Submit(ctx, req, append(opts[:len(opts):len(opts)], WithWebhookURL(hook.url))...)
		var se *StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusBadRequest &&
			strings.Contains(se.ErrorMessage, "FOREMAN_WEBHOOK_HOSTS") {
			// foreman may not call this host. Nothing was queued, so submit again and poll.
			hook.close()
			hook = nil
		}
	}
	if hook == nil {
		id, err = c.Submit(ctx, req, opts...)
	}
	if err != nil {
		return nil, err
	}

	if hook == nil {
		// Nothing can call this process back: the job's event stream says when it ends (the
		// poll below then reads it at once). An error status means foreman will not stream it,
		// and the poll takes over.
		err := c.watch(ctx, id, func(Event) error { return nil }, true)
		if err != nil && ctx.Err() != nil {
			c.abandon(ctx, id)
			return nil, fmt.Errorf("foreman: stopped waiting for job %s: %w", id, ctx.Err())
		}
	}

	interval := c.pollInterval
	var wake <-chan struct{}
	if hook != nil {
		interval *= webhookPollFactor
		wake = hook.wake
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var pollErr error // the last failed poll, reported if the wait ends without success
	for {
		job, err := c.Get(ctx, id)
		if err == nil && job.State.Terminal() {
			return c.finish(ctx, job)
		}
		// A 5xx or a transport error may clear (foreman restarting); a 4xx will not.
		var se *StatusError
		if errors.As(err, &se) && se.StatusCode < 500 && se.StatusCode != http.StatusTooManyRequests {
			return nil, err
		}
		if err != nil && ctx.Err() == nil {
			pollErr = err
		} else if err == nil {
			pollErr = nil
		}
		select {
		case <-ctx.Done():
			c.abandon(ctx, id)
			if pollErr != nil {
				return nil, fmt.Errorf("foreman: stopped waiting for job %s: %w (last poll: %v)", id, ctx.Err(), pollErr)
			}
			return nil, fmt.Errorf("foreman: stopped waiting for job %s: %w", id, ctx.Err())
		case <-wake:
		case <-ticker.C:
		}
	}
}

// finish returns a terminal job, with its result read from the completion artifact when it was
// too large to be inline.
func (c *Client) finish(ctx context.Context, job *Job) (*Job, error) {
	if job.State != StateDone {
		return job, &JobError{Job: job}
	}
	if len(job.Result) == 0 || string(job.Result) == "null" {
		a, err := c.Artifact(ctx, job.ID, CompletionArtifact)
		if err != nil {
			return job, err
		}
		job.Result = json.RawMessage(a.Data)
	}
	return job, nil
}

// abandon cancels a job whose caller stopped waiting. It is best effort: the job may have just
// ended, and foreman may be unreachable.
func (c *Client) abandon(ctx context.Context, id JobID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = c.Cancel(ctx, id)
}

// listenAddr says where Run should listen for webhooks, if anywhere.
func (c *Client) listenAddr() (string, bool) {
	if c.webhookAddrOK {
		return c.webhookAddr, c.webhookAddr != ""
	}
	if c.base == nil {
		return "", false
	}
	host := c.base.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return "127.0.0.1:0", true
	}
	return "", false
}

// webhookListener receives the events of one Run call on a path nobody else can guess.
type webhookListener struct {
	url  string
	srv  *http.Server
	wake chan struct{}
}

func (c *Client) listen(addr string) (*webhookListener, error) {
	if c.webhookSecret != "" {
		if _, err := hmacKey(c.webhookSecret); err != nil {
			return nil, err // every event would be refused
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("foreman: cannot listen for webhooks on %s: %w", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = c.outboundHost()
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("foreman: cannot make a webhook path: %w", err)
	}
	path := "/foreman-run/" + hex.EncodeToString(nonce[:])
	h := &webhookListener{
		url:  "http://" + net.JoinHostPort(host, port) + path,
		wake: make(chan struct{}, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if c.webhookSecret != "" {
			if err := VerifyWebhook(c.webhookSecret, r.Header, body); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
		}
		var ev WebhookEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not a foreman event", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		if ev.State.Terminal() {
			// Only a hint: Run reads the job with its token, so the event's content is not
			// trusted even when it is unsigned.
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
	})
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *webhookListener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
}

// outboundHost is the local address this machine uses to reach foreman, the best guess at a
// host foreman can call back. No packet is sent: a UDP "connection" only picks a route.
func (c *Client) outboundHost() string {
	port := c.base.Port()
	if port == "" {
		port = c.base.Scheme // "http" and "https" resolve to their well-known ports
	}
	conn, err := net.Dial("udp", net.JoinHostPort(c.base.Hostname(), port))
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	host, _, _ := net.SplitHostPort(conn.LocalAddr().String())
	return host
}
