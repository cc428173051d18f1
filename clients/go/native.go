// The native, Ollama-compatible routes this client covers itself: streaming chat, the model list
// and embeddings. For the rest, use any Ollama client with a BearerTransport.
package foreman

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Chat sends req to POST /api/chat with streaming on and calls fn with each chunk as it arrives;
// the last chunk has Done set and carries the metrics. The request waits in foreman's queue like
// any other: chunks start when the worker runs it. Cancelling ctx cancels the job. An error
// returned by fn stops the stream and is returned.
func (c *Client) Chat(ctx context.Context, req ChatRequest, fn func(ChatResponse) error) error {
	body := struct {
		ChatRequest
		Stream bool `json:"stream"`
	}{req, true}
	return c.stream(ctx, http.MethodPost, "/api/chat", body, func(line []byte) error {
		var chunk ChatResponse
		if err := json.Unmarshal(line, &chunk); err != nil {
			return fmt.Errorf("foreman: cannot decode a chat chunk: %w", err)
		}
		return fn(chunk)
	})
}

// Tags lists the target's models (GET /api/tags, served from foreman's inventory cache).
func (c *Client) Tags(ctx context.Context) (*TagsResponse, error) {
	var tags TagsResponse
	if err := c.call(ctx, http.MethodGet, "/api/tags", nil, nil, &tags); err != nil {
		return nil, err
	}
	return &tags, nil
}

// Embed computes embeddings (POST /api/embed). foreman never queues embeddings behind chat jobs:
// they go straight to the target's resident embedding model.
func (c *Client) Embed(ctx context.Context, req EmbedRequest) (*EmbedResponse, error) {
	var resp EmbedResponse
	if err := c.call(ctx, http.MethodPost, "/api/embed", nil, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
