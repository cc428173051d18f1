package foreman_test

// Unit tests of the client's own logic against httptest servers; the integration tests
// (integration_test.go) hold the same calls against a real foreman.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

const testJobID = foreman.JobID("01JABCDEFGHJKMNPQRSTVWXYZ0")

// recorded is one request a fake server saw.
type recorded struct {
	method, path, query string
	header              http.Header
	body                map[string]any
}

// fakeServer answers every request with status and body and records what it got.
func fakeServer(t *testing.T, status int, body string, header ...string) (*httptest.Server, <-chan recorded) {
	t.Helper()
	seen := make(chan recorded, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		rec := recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &rec.body); err != nil {
				t.Errorf("request body is not a JSON object: %s", raw)
			}
		}
		seen <- rec
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestSubmitSendsTheNativePayloadWithTheJobExtensions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		req        foreman.JobRequest
		opts       []foreman.SubmitOption
		wantBody   map[string]any
		wantHeader map[string]string
	}{
		{
			name: "a bare chat request",
			req:  foreman.ChatRequest{Model: "m", Messages: []foreman.Message{{Role: "user", Content: "hi"}}},
			wantBody: map[string]any{
				"model":    "m",
				"messages": []any{map[string]any{"role": "user", "content": "hi"}},
			},
		},
		{
			name: "a chat request with tools, think, a webhook, metadata and an idempotency key",
			req: foreman.ChatRequest{
				Model:    "m",
				Messages: []foreman.Message{{Role: "user", Content: "weather?"}},
				Tools:    []foreman.Tool{{Type: "function", Function: foreman.ToolFunction{Name: "weather"}}},
				Think:    "low",
				Options:  map[string]any{"seed": 7},
			},
			opts: []foreman.SubmitOption{
				foreman.WithWebhookURL("http://127.0.0.1:9/hook"),
				foreman.WithMetadata(map[string]string{"ticket": "42"}),
				foreman.WithIdempotencyKey("k-1"),
			},
			wantBody: map[string]any{
				"model":             "m",
				"messages":          []any{map[string]any{"role": "user", "content": "weather?"}},
				"tools":             []any{map[string]any{"type": "function", "function": map[string]any{"name": "weather"}}},
				"think":             "low",
				"options":           map[string]any{"seed": 7.0},
				"state_webhook_url": "http://127.0.0.1:9/hook",
				"metadata":          map[string]any{"ticket": "42"},
			},
			wantHeader: map[string]string{"Idempotency-Key": "k-1"},
		},
		{
			name:     "a generate request names its endpoint",
			req:      foreman.GenerateRequest{Model: "m", Prompt: "once upon", System: "be brief"},
			wantBody: map[string]any{"model": "m", "prompt": "once upon", "system": "be brief", "endpoint": "generate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeServer(t, http.StatusAccepted, `{"job_id":"`+string(testJobID)+`"}`, "Location", "/jobs/"+string(testJobID))
			id, err := foreman.New(srv.URL+"/", "tok").Submit(context.Background(), tt.req, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if id != testJobID {
				t.Errorf("job id = %q, want %q", id, testJobID)
			}
			got := <-seen
			if got.method != http.MethodPost || got.path != "/jobs" {
				t.Errorf("request = %s %s, want POST /jobs", got.method, got.path)
			}
			if a := got.header.Get("Authorization"); a != "Bearer tok" {
				t.Errorf("Authorization = %q", a)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			for k, v := range tt.wantHeader {
				if g := got.header.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			if !reflect.DeepEqual(got.body, tt.wantBody) {
				t.Errorf("body =\n%v\nwant\n%v", got.body, tt.wantBody)
			}
		})
	}
}

func TestSubmitRejectsMetadataThatIsNotAnObject(t *testing.T) {
	t.Parallel()
	c := foreman.New("http://127.0.0.1:1", "tok")
	_, err := c.Submit(context.Background(), foreman.ChatRequest{Model: "m"}, foreman.WithMetadata([]int{1}))
	if err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Fatalf("want a metadata error before any request, got %v", err)
	}
}

func TestErrorResponsesAreStatusErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		wantMsg string
	}{
		{"a wrong token", 401, `{"error":"missing or invalid bearer token"}`, "missing or invalid bearer token"},
		{"an unknown model", 404, `{"error":"model 'nope' not found"}`, "model 'nope' not found"},
		{"an idempotency conflict", 409, `{"error":"Idempotency-Key reused with another body"}`, "Idempotency-Key reused with another body"},
		{"a full queue", 503, `{"error":"queue is full"}`, "queue is full"},
		{"a body that is not Ollama's error shape", 502, "Bad Gateway\n", "Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := fakeServer(t, tt.status, tt.body)
			_, err := foreman.New(srv.URL, "tok").Get(context.Background(), testJobID)
			var se *foreman.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("want a *StatusError, got %T %v", err, err)
			}
			if se.StatusCode != tt.status || se.ErrorMessage != tt.wantMsg {
				t.Errorf("got %d %q, want %d %q", se.StatusCode, se.ErrorMessage, tt.status, tt.wantMsg)
			}
			if !strings.Contains(se.Error(), tt.wantMsg) {
				t.Errorf("Error() = %q does not name the message", se.Error())
			}
		})
	}
}

// A job as GET /jobs/{id} returns it per the contract, done with an inline result.
const doneJob = `{"job_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","state":"done","endpoint":"chat","model":"m",
"attempt":1,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:07Z",
"started_at":"2026-01-02T03:04:06Z","finished_at":"2026-01-02T03:04:07Z","position":null,"error":null,
"result":{"model":"m","created_at":"2026-01-02T03:04:07Z","message":{"role":"assistant","content":"hello"},
"done":true,"done_reason":"stop","total_duration":1500,"eval_count":3},
"artifacts":[{"name":"completion","content_type":"application/json","size":120,"sha256":"ab",
"inline":"{}","url":"http://127.0.0.1:8080/jobs/01JABCDEFGHJKMNPQRSTVWXYZ0/artifacts/completion"}],
"metadata":{"ticket":"42"},"webhook":null}`

func TestGetDecodesAJob(t *testing.T) {
	t.Parallel()
	srv, seen := fakeServer(t, 200, doneJob)
	job, err := foreman.New(srv.URL, "tok").Get(context.Background(), testJobID)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.method != "GET" || got.path != "/jobs/"+string(testJobID) {
		t.Errorf("request = %s %s", got.method, got.path)
	}
	if job.ID != testJobID || job.State != foreman.StateDone || !job.State.Terminal() || job.Position != 0 ||
		job.Error != "" || job.StartedAt == nil || job.Webhook != nil || len(job.Artifacts) != 1 {
		t.Errorf("job decoded wrong: %+v", job)
	}
	chat, err := job.ChatResponse()
	if err != nil {
		t.Fatal(err)
	}
	if chat.Message.Content != "hello" || chat.TotalDuration != 1500 || chat.EvalCount != 3 {
		t.Errorf("result decoded wrong: %+v", chat)
	}
	job.Result = json.RawMessage("null")
	if _, err := job.ChatResponse(); err == nil || !strings.Contains(err.Error(), "completion") {
		t.Errorf("a missing result must point at the completion artifact, got %v", err)
	}
}

func TestListSendsItsFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts      foreman.ListOptions
		wantQuery string
	}{
		{foreman.ListOptions{}, ""},
		{foreman.ListOptions{State: foreman.StateQueued, Model: "llama3:8b", Limit: 5, Before: testJobID},
			"before=" + string(testJobID) + "&limit=5&model=llama3%3A8b&state=queued"},
	}
	for _, tt := range tests {
		t.Run(tt.wantQuery, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeServer(t, 200, `{"jobs":[`+doneJob+`],"next":null}`)
			list, err := foreman.New(srv.URL, "tok").List(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := <-seen; got.path != "/jobs" || got.query != tt.wantQuery {
				t.Errorf("request = %s?%s, want /jobs?%s", got.path, got.query, tt.wantQuery)
			}
			if len(list.Jobs) != 1 || list.Next != "" {
				t.Errorf("list decoded wrong: %+v", list)
			}
		})
	}
}

func TestCancelUsesDeleteAndReportsConflicts(t *testing.T) {
	t.Parallel()
	srv, seen := fakeServer(t, 409, `{"error":"job is already done"}`)
	_, err := foreman.New(srv.URL, "tok").Cancel(context.Background(), testJobID)
	var se *foreman.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusConflict {
		t.Fatalf("want a 409 *StatusError, got %v", err)
	}
	if got := <-seen; got.method != http.MethodDelete || got.path != "/jobs/"+string(testJobID) {
		t.Errorf("request = %s %s", got.method, got.path)
	}
}

func TestArtifactChecksItsBytesAgainstTheETag(t *testing.T) {
	t.Parallel()
	data := `{"model":"m","done":true}`
	sum := sha256.Sum256([]byte(data))
	hexSum := hex.EncodeToString(sum[:])
	tests := []struct {
		name    string
		etag    string
		wantErr bool
	}{
		{"a matching ETag", `"` + hexSum + `"`, false},
		{"no ETag", "", false},
		{"an ETag of other bytes", `"` + strings.Repeat("0", 64) + `"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeServer(t, 200, data, "Content-Type", "application/json", "ETag", tt.etag)
			a, err := foreman.New(srv.URL, "tok").Artifact(context.Background(), testJobID, "completion")
			if got := <-seen; got.path != "/jobs/"+string(testJobID)+"/artifacts/completion" {
				t.Errorf("path = %s", got.path)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an integrity error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(a.Data) != data || a.ContentType != "application/json" || a.SHA256 != hexSum {
				t.Errorf("artifact = %+v", a)
			}
		})
	}
}

func TestChatStreamsNDJSON(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3<<20) // longer than bufio's 64 KiB default, under the 4 MiB bound
	tests := []struct {
		name     string
		body     string
		want     []string
		wantErr  string
		wantDone bool
	}{
		{
			name:     "chunks then done",
			body:     `{"message":{"role":"assistant","content":"he"},"done":false}` + "\n" + `{"message":{"role":"assistant","content":"llo"},"done":false}` + "\n" + `{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2}` + "\n",
			want:     []string{"he", "llo", ""},
			wantDone: true,
		},
		{
			name:     "a 3 MiB line",
			body:     `{"message":{"role":"assistant","content":"` + long + `"},"done":true}` + "\n",
			want:     []string{long},
			wantDone: true,
		},
		{
			name:    "an error after the first chunk",
			body:    `{"message":{"role":"assistant","content":"he"},"done":false}` + "\n" + `{"error":"target went away"}` + "\n",
			want:    []string{"he"},
			wantErr: "target went away",
		},
		{
			name:    "a stream cut before done",
			body:    `{"message":{"role":"assistant","content":"he"},"done":false}` + "\n",
			want:    []string{"he"},
			wantErr: "before its done line",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeServer(t, 200, tt.body, "Content-Type", "application/x-ndjson")
			var got []string
			var last foreman.ChatResponse
			err := foreman.New(srv.URL, "tok").Chat(context.Background(), foreman.ChatRequest{Model: "m"}, func(r foreman.ChatResponse) error {
				got = append(got, r.Message.Content)
				last = r
				return nil
			})
			req := <-seen
			if req.path != "/api/chat" || req.body["stream"] != true {
				t.Errorf("request = %s %v, want /api/chat with stream true", req.path, req.body)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("want an error with %q, got %v", tt.wantErr, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("chunks = %.40q, want %.40q", got, tt.want)
			}
			if last.Done != tt.wantDone {
				t.Errorf("last chunk done = %v", last.Done)
			}
		})
	}
}

func TestTagsAndEmbed(t *testing.T) {
	t.Parallel()
	srv, seen := fakeServer(t, 200, `{"models":[{"name":"m:latest","model":"m:latest","size":3,"details":{"family":"llama"}}],
		"model":"e","embeddings":[[0.6,0.8]]}`)
	c := foreman.New(srv.URL, "tok")
	tags, err := c.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.method != "GET" || got.path != "/api/tags" {
		t.Errorf("request = %s %s", got.method, got.path)
	}
	if len(tags.Models) != 1 || tags.Models[0].Name != "m:latest" || tags.Models[0].Details.Family != "llama" {
		t.Errorf("tags = %+v", tags)
	}
	emb, err := c.Embed(context.Background(), foreman.EmbedRequest{Model: "e", Input: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.method != "POST" || got.path != "/api/embed" || got.body["model"] != "e" {
		t.Errorf("request = %s %s %v", got.method, got.path, got.body)
	}
	if len(emb.Embeddings) != 1 || emb.Embeddings[0][1] != 0.8 {
		t.Errorf("embeddings = %+v", emb)
	}
}

func TestAnUnreachableForemanIsAClearErrorAndHonoursTheContext(t *testing.T) {
	t.Parallel()
	// A port that was free a moment ago: connections are refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	// A server that never answers: the call must end with the context.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)

	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		want    string
		wantIs  error
	}{
		{"a refused connection", refused, 5 * time.Second, "cannot reach " + refused, nil},
		{"a server that never answers", hang.URL, 200 * time.Millisecond, "", context.DeadlineExceeded},
		{"a base URL without a scheme", "127.0.0.1:8080", time.Second, "base URL", nil},
		{"a base URL with another scheme", "ftp://127.0.0.1", time.Second, "not an http(s) URL", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			start := time.Now()
			_, err := foreman.New(tt.url, "tok").Tags(ctx)
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if took := time.Since(start); took > tt.timeout+time.Second {
				t.Errorf("took %s, the context allowed %s", took, tt.timeout)
			}
		})
	}
}

func TestBearerTransportAddsTheTokenWithoutTouchingTheRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token string
		want  string
	}{
		{"tok", "Bearer tok"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeServer(t, 200, "Ollama is running")
			hc := &http.Client{Transport: &foreman.BearerTransport{Token: tt.token}}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/version", nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := (<-seen).header.Get("Authorization"); got != tt.want {
				t.Errorf("Authorization = %q, want %q", got, tt.want)
			}
			if req.Header.Get("Authorization") != "" {
				t.Error("the caller's request was modified")
			}
		})
	}
}
