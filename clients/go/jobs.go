// The /jobs surface: submit a job and get its ID at once, then read, list or cancel it and fetch
// its artifacts. Client.Run (run.go) builds on these to wait for a job.
package foreman

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// SubmitOption adds to a job submission.
type SubmitOption func(*submitConfig)

type submitConfig struct {
	webhookURL     string
	metadata       any
	idempotencyKey string
}

// WithWebhookURL asks foreman to post each state change of the job to url. Its host must be on
// foreman's FOREMAN_WEBHOOK_HOSTS allowlist, or the submission fails with a 400 *StatusError.
func WithWebhookURL(url string) SubmitOption {
	return func(s *submitConfig) { s.webhookURL = url }
}

// WithMetadata attaches a JSON object (a map or a struct) that foreman echoes in the job and in
// every webhook event, for the caller's own correlation. Its JSON may be at most the daemon's
// jobs.max_metadata (64 KiB by default); a larger one is refused with a 400 naming the setting.
func WithMetadata(metadata any) SubmitOption {
	return func(s *submitConfig) { s.metadata = metadata }
}

// WithIdempotencyKey makes a retried submission safe: the same key with the same request returns
// the first job's ID; the same key with another request fails with a 409 *StatusError.
func WithIdempotencyKey(key string) SubmitOption {
	return func(s *submitConfig) { s.idempotencyKey = key }
}

// Submit queues req as a job and returns its ID without waiting for it to run. req is a
// [ChatRequest] or a [GenerateRequest]; its Stream setting does not apply, the result is stored
// whole. An unknown model fails at once with a 404 *StatusError, a full queue with 503.
func (c *Client) Submit(ctx context.Context, req JobRequest, opts ...SubmitOption) (JobID, error) {
	var cfg submitConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	body, err := jobBody(req, cfg)
	if err != nil {
		return "", err
	}
	hreq, err := c.request(ctx, http.MethodPost, "/jobs", nil, body)
	if err != nil {
		return "", err
	}
	if cfg.idempotencyKey != "" {
		hreq.Header.Set("Idempotency-Key", cfg.idempotencyKey)
	}
	var out struct {
		JobID JobID `json:"job_id"`
	}
	if err := c.do(hreq, &out); err != nil {
		return "", err
	}
	if out.JobID == "" {
		return "", fmt.Errorf("foreman: POST /jobs answered without a job_id")
	}
	return out.JobID, nil
}

// jobBody is req's native payload plus the /jobs extensions. Going through a map keeps the
// payload whatever req's type marshals to, and sorts the keys, so an idempotent retry sends the
// same bytes.
func jobBody(req JobRequest, cfg submitConfig) (map[string]json.RawMessage, error) {
	if req == nil {
		return nil, fmt.Errorf("foreman: Submit needs a ChatRequest or GenerateRequest, got nil")
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("foreman: cannot encode the %s request: %w", req.endpoint(), err)
	}
	body := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, fmt.Errorf("foreman: the %s request is not a JSON object: %w", req.endpoint(), err)
	}
	set := func(key string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("foreman: cannot encode %s: %w", key, err)
		}
		body[key] = raw
		return nil
	}
	if req.endpoint() != "chat" {
		if err := set("endpoint", req.endpoint()); err != nil {
			return nil, err
		}
	}
	if cfg.webhookURL != "" {
		if err := set("state_webhook_url", cfg.webhookURL); err != nil {
			return nil, err
		}
	}
	if cfg.metadata != nil {
		if err := set("metadata", cfg.metadata); err != nil {
			return nil, err
		}
		if m := body["metadata"]; len(m) == 0 || m[0] != '{' {
			return nil, fmt.Errorf("foreman: metadata must encode to a JSON object, got %s", m)
		}
	}
	return body, nil
}

// Get returns the job's current state; an unknown (or pruned) ID is a 404 *StatusError.
func (c *Client) Get(ctx context.Context, id JobID) (*Job, error) {
	var job Job
	if err := c.call(ctx, http.MethodGet, jobPath(id), nil, nil, &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// List returns one page of jobs, newest first. Pass the returned Next as opts.Before for the
// following page.
func (c *Client) List(ctx context.Context, opts ListOptions) (*JobList, error) {
	q := url.Values{}
	if opts.State != "" {
		q.Set("state", string(opts.State))
	}
	if opts.Model != "" {
		q.Set("model", opts.Model)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Before != "" {
		q.Set("before", string(opts.Before))
	}
	var list JobList
	if err := c.call(ctx, http.MethodGet, "/jobs", q, nil, &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// Cancel cancels a queued or running job and returns it in state cancelled. A job that already
// ended is a 409 *StatusError.
func (c *Client) Cancel(ctx context.Context, id JobID) (*Job, error) {
	var job Job
	if err := c.call(ctx, http.MethodDelete, jobPath(id), nil, nil, &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// ArtifactData is the content of one artifact.
type ArtifactData struct {
	ContentType string
	SHA256      string // hex, from the ETag, checked against Data
	Data        []byte
}

// Artifact downloads the artifact called name of job id (every done job has
// [CompletionArtifact]) and checks its bytes against the SHA-256 in the ETag.
func (c *Client) Artifact(ctx context.Context, id JobID, name string) (*ArtifactData, error) {
	req, err := c.request(ctx, http.MethodGet, jobPath(id)+"/artifacts/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("foreman: cannot read artifact %q of job %s: %w", name, id, err)
	}
	a := &ArtifactData{ContentType: resp.Header.Get("Content-Type"), Data: data}
	sum := sha256.Sum256(data)
	a.SHA256 = hex.EncodeToString(sum[:])
	if etag := strings.Trim(strings.TrimPrefix(resp.Header.Get("ETag"), "W/"), `"`); etag != "" && !strings.EqualFold(etag, a.SHA256) {
		return nil, fmt.Errorf("foreman: artifact %q of job %s has SHA-256 %s but its ETag says %s", name, id, a.SHA256, etag)
	}
	return a, nil
}

func jobPath(id JobID) string {
	return "/jobs/" + url.PathEscape(string(id))
}
