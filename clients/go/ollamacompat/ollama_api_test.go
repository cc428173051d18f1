package ollamacompat

// Level 0 with the official Ollama Go client: api.NewClient pointed at a real foreman, the token
// added by foreman.BearerTransport, nothing else changed.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
	"github.com/ollama/ollama/api"
)

func newClient(t *testing.T, baseURL, token string) *api.Client {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, &http.Client{Transport: &foreman.BearerTransport{Token: token, BaseURL: baseURL}})
}

func TestOfficialOllamaClientThroughForeman(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	model, embedModel := f.Models(t)
	client := newClient(t, f.URL, f.Token)
	no := false
	opts := map[string]any{"temperature": 0, "seed": 42, "num_predict": 16}
	messages := []api.Message{{Role: "user", Content: "Say hello."}}

	tests := []struct {
		name string
		run  func(ctx context.Context, t *testing.T)
	}{
		{"chat", func(ctx context.Context, t *testing.T) {
			var calls int
			var final api.ChatResponse
			err := client.Chat(ctx, &api.ChatRequest{Model: model, Messages: messages, Stream: &no, Options: opts},
				func(r api.ChatResponse) error { calls++; final = r; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 || !final.Done || final.Message.Role != "assistant" || final.Message.Content == "" {
				t.Errorf("%d responses, final %+v", calls, final)
			}
		}},
		{"streaming chat", func(ctx context.Context, t *testing.T) {
			var chunks []api.ChatResponse
			err := client.Chat(ctx, &api.ChatRequest{Model: model, Messages: messages, Options: opts},
				func(r api.ChatResponse) error { chunks = append(chunks, r); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) < 2 || !chunks[len(chunks)-1].Done {
				t.Errorf("%d chunks, last %+v", len(chunks), chunks[len(chunks)-1])
			}
			for _, c := range chunks[:len(chunks)-1] {
				if c.Done {
					t.Errorf("a chunk before the last is done: %+v", c)
				}
			}
		}},
		{"generate", func(ctx context.Context, t *testing.T) {
			var text strings.Builder
			var final api.GenerateResponse
			err := client.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "Once upon a time", Options: opts},
				func(r api.GenerateResponse) error { text.WriteString(r.Response); final = r; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !final.Done || text.Len() == 0 || final.Metrics.EvalCount == 0 {
				t.Errorf("final %+v, text %q", final, text.String())
			}
		}},
		{"embed", func(ctx context.Context, t *testing.T) {
			resp, err := client.Embed(ctx, &api.EmbedRequest{Model: embedModel, Input: []string{"one", "two"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Embeddings) != 2 || len(resp.Embeddings[0]) == 0 {
				t.Errorf("embed = %+v", resp)
			}
		}},
		{"list", func(ctx context.Context, t *testing.T) {
			resp, err := client.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Models) == 0 || resp.Models[0].Name == "" {
				t.Errorf("list = %+v", resp)
			}
		}},
		{"ps", func(ctx context.Context, t *testing.T) {
			if _, err := client.ListRunning(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"version and heartbeat", func(ctx context.Context, t *testing.T) {
			v, err := client.Version(ctx)
			if err != nil || v == "" {
				t.Errorf("version %q, %v", v, err)
			}
			if err := client.Heartbeat(ctx); err != nil {
				t.Error(err)
			}
		}},
		{"a wrong token is the client's own StatusError with foreman's error text", func(ctx context.Context, t *testing.T) {
			// v0.11 reads "error"; ollamacompat012 checks the "status" that v0.12 on shows.
			_, err := newClient(t, f.URL, "wrong").List(ctx)
			var se api.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || se.ErrorMessage != "invalid bearer token" {
				t.Errorf("want a 401 api.StatusError saying the token is invalid, got %#v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tt.run(ctx, t)
		})
	}
}
