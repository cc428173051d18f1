// Wire types: the Ollama request and response shapes foreman accepts and returns, and the job
// objects of its /jobs surface. Field names and JSON tags follow Ollama's api package so values
// convert with a json round trip.
package foreman

import (
	"encoding/json"
	"fmt"
	"time"
)

// JobID is a job's 26-character ULID; IDs sort by creation time.
type JobID string

// State is where a job is in its lifecycle: queued → loading → working → done, or it ends
// failed or cancelled.
type State string

const (
	StateQueued    State = "queued"    // accepted, waiting for the worker
	StateLoading   State = "loading"   // the worker is making the job's model resident
	StateWorking   State = "working"   // inference runs
	StateDone      State = "done"      // finished; Result and Artifacts are set
	StateFailed    State = "failed"    // gave up after the attempts allowed; Error says why
	StateCancelled State = "cancelled" // cancelled by DELETE /jobs/{id} or a departed caller
)

// Terminal reports whether a job in state s will never change again.
func (s State) Terminal() bool {
	return s == StateDone || s == StateFailed || s == StateCancelled
}

// JobRequest is what [Client.Submit] and [Client.Run] accept: a [ChatRequest] (foreman's default
// endpoint) or a [GenerateRequest].
type JobRequest interface {
	endpoint() string
}

// ChatRequest is the body of Ollama's POST /api/chat.
type ChatRequest struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools,omitempty"`
	// Format is "json" or a JSON schema, passed through as is.
	Format json.RawMessage `json:"format,omitempty"`
	// Options are Ollama's model options (temperature, num_ctx, seed, num_predict, ...).
	Options map[string]any `json:"options,omitempty"`
	// Think is nil, a bool, or "low", "medium" or "high" for models that accept a level.
	Think any `json:"think,omitempty"`
	// KeepAlive is an Ollama duration ("5m", "-1"); foreman's worker applies its own
	// FOREMAN_KEEP_ALIVE to queued jobs.
	KeepAlive string `json:"keep_alive,omitempty"`
}

func (ChatRequest) endpoint() string { return "chat" }

// GenerateRequest is the body of Ollama's POST /api/generate.
type GenerateRequest struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	Suffix    string          `json:"suffix,omitempty"`
	System    string          `json:"system,omitempty"`
	Template  string          `json:"template,omitempty"`
	Context   []int           `json:"context,omitempty"`
	Raw       bool            `json:"raw,omitempty"`
	Format    json.RawMessage `json:"format,omitempty"`
	Images    [][]byte        `json:"images,omitempty"` // sent base64-encoded, as Ollama expects
	Options   map[string]any  `json:"options,omitempty"`
	Think     any             `json:"think,omitempty"`
	KeepAlive string          `json:"keep_alive,omitempty"`
}

func (GenerateRequest) endpoint() string { return "generate" }

// Message is one chat message.
type Message struct {
	Role      string     `json:"role"` // "system", "user", "assistant" or "tool"
	Content   string     `json:"content"`
	Thinking  string     `json:"thinking,omitempty"`
	Images    [][]byte   `json:"images,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	ToolName  string     `json:"tool_name,omitempty"` // on a "tool" message: which tool answered
}

// Tool declares a function the model may call.
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a callable function; Parameters is its JSON schema.
type ToolFunction struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters,omitempty"`
}

// ToolCall is a call the model asked for.
type ToolCall struct {
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function and carries its arguments.
type ToolCallFunction struct {
	Index     int            `json:"index,omitempty"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

// Metrics are the timings and counts Ollama adds to a final response (durations in
// nanoseconds on the wire).
type Metrics struct {
	TotalDuration      time.Duration `json:"total_duration,omitempty"`
	LoadDuration       time.Duration `json:"load_duration,omitempty"`
	PromptEvalCount    int           `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration time.Duration `json:"prompt_eval_duration,omitempty"`
	EvalCount          int           `json:"eval_count,omitempty"`
	EvalDuration       time.Duration `json:"eval_duration,omitempty"`
}

// ChatResponse is one chunk of a chat stream, or the whole answer when not streaming.
type ChatResponse struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Message    Message   `json:"message"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"` // "stop", "length", "load" or "unload"
	Metrics
}

// GenerateResponse is the answer of /api/generate.
type GenerateResponse struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Response   string    `json:"response"`
	Thinking   string    `json:"thinking,omitempty"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"`
	Context    []int     `json:"context,omitempty"`
	Metrics
}

// Job is foreman's view of one job, as GET /jobs/{id} returns it.
type Job struct {
	ID    JobID `json:"job_id"`
	State State `json:"state"`
	// Kind is "async" for jobs submitted to /jobs and "sync" for native /api/chat and
	// /api/generate requests, which foreman queues (and lists) as jobs too.
	Kind       string     `json:"kind"`
	Endpoint   string     `json:"endpoint"` // "chat" or "generate"
	Model      string     `json:"model"`
	Attempt    int        `json:"attempt"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// Position is the 1-based place in the queue while the job is queued, else 0.
	Position int `json:"position"`
	// Error is the last error of a failed job (or of the attempt before a retry).
	Error string `json:"error"`
	// Result is the native final response (a [ChatResponse] or [GenerateResponse] object) when
	// the job is done and the response fits FOREMAN_INLINE_LIMIT; otherwise null, and the
	// "completion" artifact holds it. Decode it with [Job.ChatResponse] or [Job.GenerateResponse].
	Result    json.RawMessage `json:"result"`
	Artifacts []Artifact      `json:"artifacts"`
	Metadata  json.RawMessage `json:"metadata"`
	Webhook   *WebhookStatus  `json:"webhook"`
}

// ChatResponse decodes Result of a done chat job.
func (j *Job) ChatResponse() (*ChatResponse, error) {
	var r ChatResponse
	return &r, j.decodeResult(&r)
}

// GenerateResponse decodes Result of a done generate job.
func (j *Job) GenerateResponse() (*GenerateResponse, error) {
	var r GenerateResponse
	return &r, j.decodeResult(&r)
}

func (j *Job) decodeResult(v any) error {
	if len(j.Result) == 0 || string(j.Result) == "null" {
		return fmt.Errorf("foreman: job %s (state %s) has no inline result; read its %q artifact", j.ID, j.State, CompletionArtifact)
	}
	if err := json.Unmarshal(j.Result, v); err != nil {
		return fmt.Errorf("foreman: cannot decode the result of job %s: %w", j.ID, err)
	}
	return nil
}

// CompletionArtifact is the artifact every done job has: its native final response.
const CompletionArtifact = "completion"

// Artifact describes a named output of a done job.
type Artifact struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"` // hex
	// Inline is the artifact's text when it fits FOREMAN_INLINE_LIMIT, else nil.
	Inline *string `json:"inline"`
	// URL is where [Client.Artifact] (or any HTTP client with the token) fetches its bytes.
	URL string `json:"url"`
}

// WebhookStatus is the delivery state of a job's webhook events.
type WebhookStatus struct {
	URL       string `json:"url"`
	Pending   int    `json:"pending"`
	Delivered int    `json:"delivered"`
	Dead      int    `json:"dead"`
	LastError string `json:"last_error"`
}

// WebhookEvent is the body foreman posts to a job's state_webhook_url on each state change.
// Verify it with [VerifyWebhook] before decoding it.
type WebhookEvent struct {
	JobID         JobID           `json:"job_id"`
	State         State           `json:"state"`
	PreviousState State           `json:"previous_state"`
	Timestamp     time.Time       `json:"timestamp"`
	Model         string          `json:"model"`
	Attempt       int             `json:"attempt"`
	Error         string          `json:"error"`
	Result        json.RawMessage `json:"result"`
	Artifacts     []Artifact      `json:"artifacts"`
	Metadata      json.RawMessage `json:"metadata"`
}

// JobList is one page of GET /jobs, newest first.
type JobList struct {
	Jobs []Job `json:"jobs"`
	// Next is the cursor for the following page ([ListOptions.Before]), "" on the last page.
	Next JobID `json:"next"`
}

// ListOptions filters GET /jobs; zero values mean no filter and foreman's default page size.
type ListOptions struct {
	State  State
	Model  string
	Limit  int
	Before JobID
}

// Model is one entry of GET /api/tags.
type Model struct {
	Name       string       `json:"name"`
	Model      string       `json:"model"`
	ModifiedAt time.Time    `json:"modified_at"`
	Size       int64        `json:"size"`
	Digest     string       `json:"digest"`
	Details    ModelDetails `json:"details"`
}

// ModelDetails describes a model's format and size class.
type ModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// TagsResponse is the answer of GET /api/tags: the models the target has.
type TagsResponse struct {
	Models []Model `json:"models"`
}

// EmbedRequest is the body of POST /api/embed. Input is a string or a []string.
type EmbedRequest struct {
	Model      string         `json:"model"`
	Input      any            `json:"input"`
	Truncate   *bool          `json:"truncate,omitempty"`
	Dimensions int            `json:"dimensions,omitempty"`
	Options    map[string]any `json:"options,omitempty"`
	KeepAlive  string         `json:"keep_alive,omitempty"`
}

// EmbedResponse holds one L2-normalised vector per input.
type EmbedResponse struct {
	Model           string        `json:"model"`
	Embeddings      [][]float32   `json:"embeddings"`
	TotalDuration   time.Duration `json:"total_duration,omitempty"`
	LoadDuration    time.Duration `json:"load_duration,omitempty"`
	PromptEvalCount int           `json:"prompt_eval_count,omitempty"`
}
