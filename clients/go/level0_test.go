package foreman_test

// Level 0: go-llm/majordomo use foreman through their existing native Ollama provider
// (llm.Foreman(baseURL, token)). This test talks to a real foreman exactly as that provider
// does: plain net/http, a bearer header, POST /api/chat with stream true or false, NDJSON read
// with a bufio.Scanner capped at 4 MiB a line, tools and think passed through untouched. It uses
// nothing from this package, so a pass means an unmodified Ollama provider works.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
)

// providerChunk is the subset of Ollama's chat response a provider reads.
type providerChunk struct {
	Model     string `json:"model"`
	CreatedAt string `json:"created_at"`
	Message   struct {
		Role      string `json:"role"`
		Content   string `json:"content"`
		Thinking  string `json:"thinking"`
		ToolCalls []struct {
			Function struct {
				Name      string         `json:"name"`
				Arguments map[string]any `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"message"`
	Done       bool   `json:"done"`
	DoneReason string `json:"done_reason"`
	EvalCount  int    `json:"eval_count"`
	Error      string `json:"error"`
}

// providerChat is the provider's request path: marshal, POST with the token, then either decode
// one object or scan NDJSON lines until done.
func providerChat(ctx context.Context, baseURL, token string, body map[string]any) (*http.Response, []providerChunk, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+"/api/chat", bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e providerChunk
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp, nil, fmt.Errorf("ollama: %s: %s", resp.Status, e.Error)
	}
	if stream, _ := body["stream"].(bool); !stream {
		var one providerChunk
		if err := json.NewDecoder(resp.Body).Decode(&one); err != nil {
			return resp, nil, err
		}
		return resp, []providerChunk{one}, nil
	}
	var chunks []providerChunk
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var c providerChunk
		if err := json.Unmarshal(line, &c); err != nil {
			return resp, chunks, fmt.Errorf("ollama: bad stream line %q: %w", line, err)
		}
		if c.Error != "" {
			return resp, chunks, fmt.Errorf("ollama: %s", c.Error)
		}
		chunks = append(chunks, c)
		if c.Done {
			return resp, chunks, nil
		}
	}
	if err := sc.Err(); err != nil {
		return resp, chunks, err
	}
	return resp, chunks, fmt.Errorf("ollama: stream ended without done")
}

func TestLevel0GoLLMProviderTalksToForeman(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	model, _ := f.Models(t)
	weather := map[string]any{
		"type": "function",
		"function": map[string]any{
			"name":        "get_weather",
			"description": "Current weather for a city",
			"parameters": map[string]any{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}},
				"required":   []string{"city"},
			},
		},
	}
	messages := []map[string]any{
		{"role": "system", "content": "You are terse."},
		{"role": "user", "content": "What is the weather in Lyon?"},
	}

	// With the simulator as target the answers are known: it calls the first tool it is given
	// and thinks when asked to, so these prove foreman passed tools and think through.
	tests := []struct {
		name      string
		stream    bool
		extra     map[string]any
		wantTool  string
		wantThink bool
	}{
		{"stream false", false, nil, "", false},
		{"stream true", true, nil, "", false},
		{"stream true with tools", true, map[string]any{"tools": []any{weather}}, "get_weather", false},
		{"stream false with tools", false, map[string]any{"tools": []any{weather}}, "get_weather", false},
		{"stream true with think", true, map[string]any{"think": true}, "", true},
	}
	// A think level ("low") is passed through too: Ollama 0.11.4 accepts levels only for gpt-oss
	// models, so the simulator's refusal, relayed unchanged, is the proof that it arrived.
	t.Run("a think level reaches the target", func(t *testing.T) {
		t.Parallel()
		if !f.Simulated {
			t.Skip("the refusal is known only for the simulator's models")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		body := map[string]any{"model": model, "messages": messages, "stream": false, "think": "low"}
		_, _, err := providerChat(ctx, f.URL, f.Token, body)
		if err == nil || !strings.Contains(err.Error(), `think value "low" is not supported`) {
			t.Errorf("err = %v, want the target's refusal of the think level", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := map[string]any{
				"model":    model,
				"messages": messages,
				"stream":   tt.stream,
				"options":  map[string]any{"temperature": 0, "seed": 42, "num_predict": 16},
			}
			for k, v := range tt.extra {
				body[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			resp, chunks, err := providerChat(ctx, f.URL, f.Token, body)
			if err != nil {
				t.Fatal(err)
			}
			wantType := "application/json"
			if tt.stream {
				wantType = "application/x-ndjson"
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, wantType)
			}
			if id := resp.Header.Get("X-Foreman-Job-Id"); len(id) != 26 {
				t.Errorf("X-Foreman-Job-Id = %q, want a ULID", id)
			}
			last := chunks[len(chunks)-1]
			if !last.Done || last.DoneReason == "" || last.Model == "" || last.CreatedAt == "" {
				t.Errorf("final chunk = %+v", last)
			}
			var content, thinking strings.Builder
			var tools []string
			for _, c := range chunks {
				if c.Message.Role != "" && c.Message.Role != "assistant" {
					t.Errorf("chunk role = %q", c.Message.Role)
				}
				content.WriteString(c.Message.Content)
				thinking.WriteString(c.Message.Thinking)
				for _, call := range c.Message.ToolCalls {
					tools = append(tools, call.Function.Name)
				}
			}
			if tt.stream && len(chunks) < 2 {
				t.Errorf("%d chunks: not a stream", len(chunks))
			}
			if content.Len() == 0 && len(tools) == 0 {
				t.Error("the answer has neither content nor tool calls")
			}
			if !f.Simulated {
				return
			}
			if tt.wantTool != "" && (len(tools) != 1 || tools[0] != tt.wantTool) {
				t.Errorf("tool calls = %v, want one call of %s", tools, tt.wantTool)
			}
			if tt.wantTool == "" && len(tools) > 0 {
				t.Errorf("tool calls = %v without tools", tools)
			}
			if got := thinking.Len() > 0; got != tt.wantThink {
				t.Errorf("thinking = %q, want some: %v", thinking.String(), tt.wantThink)
			}
		})
	}

	t.Run("a provider that stops reading cancels its job", func(t *testing.T) {
		t.Parallel()
		// A provider's caller cancels its context mid-stream; foreman must not keep the one
		// worker busy with an answer nobody reads.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		data, _ := json.Marshal(map[string]any{"model": model, "messages": messages, "stream": true,
			"options": map[string]any{"num_predict": 5000}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/api/chat", bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+f.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-Foreman-Job-Id")
		if !bufio.NewScanner(resp.Body).Scan() {
			t.Fatal("no first chunk")
		}
		cancel()
		resp.Body.Close()

		deadline := time.Now().Add(15 * time.Second)
		for {
			job := getJob(t, f.URL, f.Token, id)
			if job["state"] == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s is still %v after its caller left", id, job["state"])
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a wrong token is 401 with a Bearer challenge", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, _, err := providerChat(ctx, f.URL, "wrong", map[string]any{"model": model, "messages": messages, "stream": true})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("want a 401, got %v", err)
		}
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
		}
	})
}

// getJob reads GET /jobs/{id} as plain JSON.
func getJob(t *testing.T, baseURL, token, id string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/jobs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var job map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&job); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jobs/%s: %s, %v", id, resp.Status, err)
	}
	return job
}
