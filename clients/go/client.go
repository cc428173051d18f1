// Package foreman is the Go client for foreman, the daemon that fronts one Ollama server with a
// bearer token, a durable queue and an asynchronous /jobs surface with signed webhooks.
//
// The native routes (/api/chat, /api/generate, /api/embed, ...) are Ollama's own, so any Ollama
// client works against foreman once it sends the token: wrap its HTTP transport in a
// [BearerTransport]. This package adds what Ollama clients lack: submitting jobs ([Client.Submit]),
// following them ([Client.Get], [Client.List], [Client.Cancel], [Client.Artifact],
// [Client.Watch]), waiting for them ([Client.Run]) and verifying the webhooks foreman sends
// ([VerifyWebhook]).
//
// Every call takes a context first; failures reported by foreman come back as a *[StatusError].
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
	"net/url"
	"strings"
	"time"
)

// DefaultPollInterval is how often [Client.Run] asks foreman for a job's state when neither a
// webhook nor the job's event stream can tell it.
const DefaultPollInterval = time.Second

// maxLineSize bounds one NDJSON line, as go-llm's Ollama provider does: a final chat chunk carries
// the whole tool-call list, so the 64 KiB bufio default is too small.
const maxLineSize = 4 << 20

// Client talks to one foreman daemon. It is safe for concurrent use.
type Client struct {
	base          *url.URL
	token         string
	http          *http.Client
	pollInterval  time.Duration
	webhookAddr   string
	webhookAddrOK bool // whether WithWebhookAddr was given, so "" can mean "never listen"
	webhookSecret string
	baseErr       error
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient sets the HTTP client used for every request (default: one like
// http.DefaultClient). The client adds the bearer token itself, so hc needs no special
// transport. hc is copied, never changed: the copy drops the token from a redirect that leaves
// foreman's origin (scheme, host and port), then applies hc's own CheckRedirect, if any. net/http
// alone would send it on to the same host name on another port.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithPollInterval sets how often [Client.Run] polls GET /jobs/{id} when foreman will not stream
// the job's events (default [DefaultPollInterval]). While a webhook is registered Run polls ten
// times less often: the poll then only guards against callbacks that never arrive.
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// WithWebhookAddr sets the address [Client.Run] listens on for job webhooks, such as
// "0.0.0.0:0" when foreman runs on another host. Port 0 picks a free port. An empty addr turns the
// listener off, so Run follows the job's event stream ([Client.Watch]). Without this option Run
// listens on 127.0.0.1:0 when foreman's URL is a loopback address and follows the event stream
// otherwise.
//
// foreman posts to http://<host>:<port> of the listener; if the host is unspecified (0.0.0.0 or
// ::) the local address this machine uses to reach foreman is sent instead. foreman only calls
// hosts on its FOREMAN_WEBHOOK_HOSTS allowlist; when it refuses the URL, Run follows the event
// stream.
func WithWebhookAddr(addr string) Option {
	return func(c *Client) {
		c.webhookAddr = addr
		c.webhookAddrOK = true
	}
}

// WithWebhookSecret sets foreman's FOREMAN_WEBHOOK_SECRET so [Client.Run] rejects webhook calls
// whose signature does not verify. Without it Run treats webhooks only as a hint to fetch the job
// with its token, which is safe but lets anyone who finds the listener make Run poll early. A
// secret that cannot be a key (see [VerifyOptions].Secrets) makes Run fail with [ErrSecret]
// before it submits.
func WithWebhookSecret(secret string) Option {
	return func(c *Client) { c.webhookSecret = secret }
}

// New returns a client for the foreman at baseURL (such as "http://127.0.0.1:8080") that
// authenticates with token. An empty token sends no Authorization header, for a foreman started
// with allow_unauthenticated. A malformed baseURL is reported by the first call.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{token: token, pollInterval: DefaultPollInterval}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	switch {
	case err != nil:
		c.baseErr = fmt.Errorf("foreman: cannot parse base URL %q: %w", baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		c.baseErr = fmt.Errorf("foreman: base URL %q is not an http(s) URL with a host", baseURL)
	}
	c.base = u
	for _, opt := range opts {
		opt(c)
	}
	c.http = c.guarded(c.http)
	return c
}

// guarded is a copy of hc that never sends the token on a redirect away from foreman's origin.
// net/http copies the Authorization header the client set to a redirect that keeps the host
// name, whatever the port: the copy's CheckRedirect removes it there, then does what hc's own
// CheckRedirect (or net/http's default: at most 10 redirects) would.
func (c *Client) guarded(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	guarded := *hc
	check := hc.CheckRedirect
	guarded.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if c.base == nil || origin(req.URL) != origin(c.base) {
			req.Header.Del("Authorization")
		}
		if check != nil {
			return check(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &guarded
}

// StatusError is an error response from foreman (or from Ollama behind it), such as 401 for a
// wrong token, 404 for an unknown model or job, 409 for cancelling a finished job or reusing an
// idempotency key with another body, 503 when the queue is full.
type StatusError struct {
	StatusCode int
	Status     string // the status line, such as "404 Not Found"
	// ErrorMessage is the "error" field of foreman's {"error": "..."} body, or the body itself
	// when it is not that shape.
	ErrorMessage string
}

func (e *StatusError) Error() string {
	if e.ErrorMessage == "" {
		return "foreman: " + e.Status
	}
	return "foreman: " + e.Status + ": " + e.ErrorMessage
}

// request builds an authenticated request for path (relative to the base URL) and query.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body any) (*http.Request, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("foreman: cannot encode %s %s request: %w", method, path, err)
		}
		r = bytes.NewReader(data)
	}
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, fmt.Errorf("foreman: cannot build %s %s request: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// send performs req and turns a transport failure or an error status into an error; on success
// the caller owns the response body.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		// A call cut short by its context says so, not that foreman is unreachable; the context's
		// error stays reachable with errors.Is.
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("foreman: %s %s: %w", req.Method, req.URL.Path, ctxErr)
		}
		return nil, fmt.Errorf("foreman: cannot reach %s (%s %s): %w", c.base.Redacted(), req.Method, req.URL.Path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, statusError(resp, data)
	}
	return resp, nil
}

func statusError(resp *http.Response, body []byte) *StatusError {
	e := &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	var shape struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(body, &shape) == nil && shape.Error != nil {
		e.ErrorMessage = *shape.Error
	} else {
		e.ErrorMessage = strings.TrimSpace(string(body))
	}
	return e
}

// call builds a request from method, path, query and the JSON body in, then does it.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	req, err := c.request(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

// do sends req and decodes its JSON response into out (skipped when out is nil).
func (c *Client) do(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("foreman: cannot decode %s %s response: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// stream sends a JSON request and calls fn with each line of the NDJSON response. A line
// {"error": "..."} (Ollama's way to fail after the first chunk) ends the stream with that error,
// and a stream that stops before a "done": true line is an error, as it is for ollama-js.
func (c *Client) stream(ctx context.Context, method, path string, body any, fn func([]byte) error) error {
	req, err := c.request(ctx, method, path, nil, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineSize)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var head struct {
			Error *string `json:"error"`
			Done  bool    `json:"done"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return fmt.Errorf("foreman: cannot decode %s %s stream line: %w", method, path, err)
		}
		if head.Error != nil {
			return fmt.Errorf("foreman: %s %s failed mid-stream: %s", method, path, *head.Error)
		}
		if err := fn(line); err != nil {
			return err
		}
		if head.Done {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("foreman: %s %s stream: %w", method, path, ctxErr)
		}
		return fmt.Errorf("foreman: cannot read %s %s stream: %w", method, path, err)
	}
	return fmt.Errorf("foreman: %s %s stream ended before its done line", method, path)
}
