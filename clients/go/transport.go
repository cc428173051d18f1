// BearerTransport lets any HTTP-based client talk to foreman: the official Ollama Go client,
// go-llm, or plain net/http. foreman speaks Ollama's wire protocol and only wants the token, and
// the token must reach foreman alone, never a host a redirect names.
package foreman

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// BearerTransport is an http.RoundTripper that adds "Authorization: Bearer <Token>" to the
// requests it sends to foreman before handing them to Base (http.DefaultTransport when nil). For
// example:
//
//	hc := &http.Client{Transport: &foreman.BearerTransport{Token: token, BaseURL: baseURL}}
//	ollama := api.NewClient(base, hc) // github.com/ollama/ollama/api
//
// A request is sent to foreman when its scheme, host and port match foreman's (a missing port is
// the scheme's default). Which requests those are depends on BaseURL:
//
//   - Set: only requests to BaseURL's scheme, host and port get the token.
//   - Unset: the first request of each redirect chain that net/http's Client follows is taken to
//     be for foreman; it and later requests to the same scheme, host and port get the token, and a
//     redirect elsewhere does not. A client that follows redirects by sending new requests itself
//     cannot be told apart this way, so set BaseURL when you can.
//
// A request to anywhere else is sent without the token: nothing is added, and an Authorization
// header that holds the token is removed (net/http copies the caller's headers when it follows a
// redirect to the same host name on another port).
type BearerTransport struct {
	Token string
	// BaseURL is foreman's URL, such as "http://foreman.internal:8080"; only its scheme, host and
	// port count. A BaseURL that is not an absolute http(s) URL fails every request.
	BaseURL string
	Base    http.RoundTripper
}

// RoundTrip implements http.RoundTripper. It leaves req untouched, as the interface requires,
// and sends a copy when the Authorization header has to change.
func (t *BearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if t.Token == "" {
		return base.RoundTrip(req)
	}
	home, err := t.home(req)
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // RoundTrip must close the body, even on errors
		}
		return nil, err
	}
	bearer := "Bearer " + t.Token
	if origin(req.URL) == home {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", bearer)
		return base.RoundTrip(r)
	}
	for _, v := range req.Header.Values("Authorization") {
		if v == bearer {
			r := req.Clone(req.Context())
			r.Header.Del("Authorization")
			return base.RoundTrip(r)
		}
	}
	return base.RoundTrip(req)
}

// home is the origin the token belongs to: BaseURL's, else that of the request that started
// req's redirect chain (net/http links each redirect to the response that caused it).
func (t *BearerTransport) home(req *http.Request) (string, error) {
	if t.BaseURL != "" {
		u, err := url.Parse(t.BaseURL)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return "", fmt.Errorf("foreman: BearerTransport.BaseURL %q is not an http(s) URL with a host", t.BaseURL)
		}
		return origin(u), nil
	}
	first := req
	for first.Response != nil {
		if first.Response.Request == nil {
			return "", nil // a redirect from a request Base did not report: not foreman's for sure
		}
		first = first.Response.Request
	}
	return origin(first.URL), nil
}

// origin is "scheme://host:port" with the default port filled in and the host in lower case, so
// http://Foreman and http://foreman:80 are one origin.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
