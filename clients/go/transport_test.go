package foreman_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

// authLog records the Authorization header of each request a server received, by path.
type authLog struct {
	mu   sync.Mutex
	seen map[string]string
}

func (l *authLog) record(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[r.URL.Path] = r.Header.Get("Authorization")
}

func (l *authLog) get(path string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.seen[path]
	return v, ok
}

// redirectingServers starts "foreman" and "elsewhere", both on 127.0.0.1 on different ports.
// foreman redirects /to-elsewhere to elsewhere's /steal and /to-self to its own /landed;
// elsewhere redirects /to-foreman to foreman's /from-elsewhere.
func redirectingServers(t *testing.T) (fsrv, esrv *httptest.Server, flog, elog *authLog) {
	t.Helper()
	flog, elog = &authLog{seen: map[string]string{}}, &authLog{seen: map[string]string{}}
	var elsewhereURL string
	fsrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flog.record(r)
		switch r.URL.Path {
		case "/to-elsewhere":
			http.Redirect(w, r, elsewhereURL+"/steal", http.StatusTemporaryRedirect)
		case "/to-self":
			http.Redirect(w, r, "/landed", http.StatusFound)
		default:
			io.WriteString(w, "Ollama is running")
		}
	}))
	t.Cleanup(fsrv.Close)
	esrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elog.record(r)
		if r.URL.Path == "/to-foreman" {
			http.Redirect(w, r, fsrv.URL+"/from-elsewhere", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, "thanks")
	}))
	t.Cleanup(esrv.Close)
	elsewhereURL = esrv.URL
	return fsrv, esrv, flog, elog
}

// The token must reach foreman alone, whatever foreman (or a target behind it) redirects to.
func TestBearerTransportSendsTheTokenToForemansHostOnly(t *testing.T) {
	t.Parallel()
	const token = "tok-secret"
	const bearer = "Bearer " + token
	const foremanURL, elsewhereURL = "{foreman}", "{elsewhere}"
	tests := []struct {
		name    string
		baseURL string // with {foreman} for the foreman server's URL
		url     string // with {foreman} or {elsewhere}
		header  string // the caller's own Authorization header
		// what each path received, "" for no Authorization header
		foreman, elsewhere map[string]string
	}{
		{"a redirect to another port loses the token when BaseURL is unset", "", foremanURL + "/to-elsewhere", "",
			map[string]string{"/to-elsewhere": bearer}, map[string]string{"/steal": ""}},
		{"a redirect to another port loses the token when BaseURL is set", foremanURL, foremanURL + "/to-elsewhere", "",
			map[string]string{"/to-elsewhere": bearer}, map[string]string{"/steal": ""}},
		{"the caller's own copy of the token is dropped when net/http carries it along", "", foremanURL + "/to-elsewhere", bearer,
			map[string]string{"/to-elsewhere": bearer}, map[string]string{"/steal": ""}},
		{"a redirect within foreman keeps the token", "", foremanURL + "/to-self", "",
			map[string]string{"/to-self": bearer, "/landed": bearer}, nil},
		{"BaseURL's path and letter case do not matter", strings.Replace(foremanURL, "{", "HTTP://{", 1) + "/api/", foremanURL + "/to-self", "",
			map[string]string{"/to-self": bearer, "/landed": bearer}, nil},
		{"a request to another host never gets it when BaseURL is set", foremanURL, elsewhereURL + "/direct", "",
			nil, map[string]string{"/direct": ""}},
		{"another host's own Authorization is left alone", foremanURL, elsewhereURL + "/own", "Basic dXNlcjpwdw==",
			nil, map[string]string{"/own": "Basic dXNlcjpwdw=="}},
		{"a redirect from elsewhere to foreman gets it when BaseURL is set", foremanURL, elsewhereURL + "/to-foreman", "",
			map[string]string{"/from-elsewhere": bearer}, map[string]string{"/to-foreman": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsrv, esrv, flog, elog := redirectingServers(t)
			hostPort := strings.TrimPrefix(fsrv.URL, "http://")
			fill := strings.NewReplacer("HTTP://{foreman}", "HTTP://"+hostPort, foremanURL, fsrv.URL, elsewhereURL, esrv.URL).Replace
			hc := &http.Client{Transport: &foreman.BearerTransport{Token: token, BaseURL: fill(tt.baseURL)}}
			req, err := http.NewRequest(http.MethodGet, fill(tt.url), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, s := range []struct {
				name string
				log  *authLog
				want map[string]string
			}{{"foreman", flog, tt.foreman}, {"elsewhere", elog, tt.elsewhere}} {
				for path, want := range s.want {
					got, ok := s.log.get(path)
					if !ok {
						t.Errorf("%s never received %s", s.name, path)
					} else if got != want {
						t.Errorf("%s%s received Authorization %q, want %q", s.name, path, got, want)
					}
				}
			}
			if req.Header.Get("Authorization") != tt.header {
				t.Error("the caller's request was modified")
			}
		})
	}
}

// roundTripFunc lets a test see what BearerTransport hands to its Base without a socket, for
// hosts and ports a test cannot listen on.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestBearerTransportComparesSchemeHostAndPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		baseURL, url string
		want         bool
	}{
		{"http://foreman.internal", "http://FOREMAN.internal:80/api/tags", true},
		{"https://foreman.internal", "https://foreman.internal:443/api/tags", true},
		{"http://[::1]:8080", "http://[::1]:8080/api/tags", true},
		{"http://foreman.internal:8080", "http://foreman.internal:8081/api/tags", false},
		{"https://foreman.internal", "http://foreman.internal:443/api/tags", false},
		{"http://foreman.internal", "http://foreman.internal.evil.example/api/tags", false},
		{"http://foreman.internal", "http://evil.example/foreman.internal", false},
	}
	for _, tt := range tests {
		t.Run(tt.baseURL+" "+tt.url, func(t *testing.T) {
			t.Parallel()
			var got string
			tr := &foreman.BearerTransport{Token: "tok", BaseURL: tt.baseURL, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				got = r.Header.Get("Authorization")
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})}
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if (got == "Bearer tok") != tt.want {
				t.Errorf("Authorization = %q, want the token: %v", got, tt.want)
			}
		})
	}
}

func TestBearerTransportRefusesABaseURLWithoutAHost(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"foreman.internal:8080", "/api", "ftp://foreman.internal", "http://%zz"} {
		t.Run(base, func(t *testing.T) {
			t.Parallel()
			hc := &http.Client{Transport: &foreman.BearerTransport{Token: "tok", BaseURL: base}}
			_, err := hc.Get("http://127.0.0.1:1/api/tags")
			if err == nil || !strings.Contains(err.Error(), "BaseURL") {
				t.Fatalf("want an error naming BaseURL before anything is sent, got %v", err)
			}
		})
	}
}

// Without BaseURL the start of a redirect chain is found through each redirect's Response.Request,
// which a Base other than http.Transport may leave nil; the token then stays home.
func TestBearerTransportWithoutBaseURLKeepsTheTokenWhenTheChainIsUnknown(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got[r.URL.Host] = r.Header.Get("Authorization")
		if r.URL.Host == "foreman.internal" {
			h := http.Header{"Location": {"http://elsewhere.example/steal"}}
			return &http.Response{StatusCode: http.StatusTemporaryRedirect, Header: h, Body: http.NoBody}, nil
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	hc := &http.Client{Transport: &foreman.BearerTransport{Token: "tok", Base: base}}
	resp, err := hc.Get("http://foreman.internal/api/tags")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got["foreman.internal"] != "Bearer tok" || got["elsewhere.example"] != "" {
		t.Errorf("Authorization by host: %q", got)
	}
}
