package ollamacompat012

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
	"github.com/ollama/ollama/api"
)

// The texts foreman's 401 carries in "status" (src/http/router.ts), which this client shows as
// the whole error.
const (
	wrongTokenStatus   = "401 Unauthorized: invalid bearer token"
	missingTokenStatus = "401 Unauthorized: missing bearer token: send Authorization: Bearer <token>"
)

// streamedStatus is what the client shows for a 401 to a streaming call (chat, generate, pull):
// it takes the HTTP status line and ignores the body, so foreman cannot say more there.
const streamedStatus = "401 Unauthorized"

func TestOllamaClientV012ShowsWhyForemanRefusedTheToken(t *testing.T) {
	t.Parallel()
	f := testenv.Start(t, testenv.Options{})
	u, err := url.Parse(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	clients := []struct {
		name      string
		client    *api.Client
		status    string // what a non-streaming call shows
		streaming string // what a streaming call shows
	}{
		{"a wrong token", api.NewClient(u, &http.Client{Transport: &foreman.BearerTransport{Token: "wrong", BaseURL: f.URL}}), wrongTokenStatus, streamedStatus},
		{"no token", api.NewClient(u, http.DefaultClient), missingTokenStatus, streamedStatus},
	}
	no := false
	calls := []struct {
		name      string
		streaming bool
		call      func(ctx context.Context, c *api.Client) error
	}{
		{"list", false, func(ctx context.Context, c *api.Client) error { _, err := c.List(ctx); return err }},
		{"ps", false, func(ctx context.Context, c *api.Client) error { _, err := c.ListRunning(ctx); return err }},
		{"version", false, func(ctx context.Context, c *api.Client) error { _, err := c.Version(ctx); return err }},
		{"show", false, func(ctx context.Context, c *api.Client) error {
			_, err := c.Show(ctx, &api.ShowRequest{Model: "tiny"})
			return err
		}},
		{"embed", false, func(ctx context.Context, c *api.Client) error {
			_, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: "x"})
			return err
		}},
		{"chat", true, func(ctx context.Context, c *api.Client) error {
			return c.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi"}}, Stream: &no},
				func(api.ChatResponse) error { return nil })
		}},
		{"generate", true, func(ctx context.Context, c *api.Client) error {
			return c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "hi"}, func(api.GenerateResponse) error { return nil })
		}},
	}
	for _, cl := range clients {
		for _, call := range calls {
			t.Run(cl.name+"/"+call.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := call.call(ctx, cl.client)
				var ae api.AuthorizationError
				if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
					t.Fatalf("want a 401 api.AuthorizationError, got %#v", err)
				}
				want := cl.status
				if call.streaming {
					want = cl.streaming
				}
				t.Logf("the client shows: %s", err)
				if err.Error() != want {
					t.Errorf("the client shows %q, want %q", err, want)
				}
			})
		}
	}
}
