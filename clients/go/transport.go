// BearerTransport lets any HTTP-based client talk to foreman: the official Ollama Go client,
// go-llm, or plain net/http. foreman speaks Ollama's wire protocol and only wants the token.
package foreman

import "net/http"

// BearerTransport is an http.RoundTripper that adds "Authorization: Bearer <Token>" to every
// request before handing it to Base (http.DefaultTransport when nil). For example:
//
//	hc := &http.Client{Transport: &foreman.BearerTransport{Token: token}}
//	ollama := api.NewClient(baseURL, hc) // github.com/ollama/ollama/api
type BearerTransport struct {
	Token string
	Base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper. It leaves req untouched, as the interface requires,
// and sends a copy that carries the token.
func (t *BearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if t.Token == "" {
		return base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+t.Token)
	return base.RoundTrip(r)
}
