package foreman_test

// The token must reach foreman alone: a redirect to another origin (even the same host on another
// port, which net/http would send the Authorization header to) gets no token, whether the client
// built its own http.Client or was given one.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	foreman "github.com/foreman-dev/foreman/clients/go"
)

func TestTheTokenNeverFollowsARedirectAwayFromForeman(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	auth := map[string]string{} // what each server saw, by path
	record := func(who string, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		auth[who+" "+r.URL.Path] = r.Header.Get("Authorization")
	}
	job := func(w http.ResponseWriter) {
		fmt.Fprintf(w, `{"job_id":%q,"state":"done"}`, testJobID)
	}
	// Another server on the same host name, another port: the origin net/http confuses.
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("elsewhere", r)
		job(w)
	}))
	defer elsewhere.Close()
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("home", r)
		switch r.URL.Path {
		case "/jobs/AWAY":
			http.Redirect(w, r, elsewhere.URL+"/jobs/STOLEN", http.StatusTemporaryRedirect)
		case "/jobs/MOVED":
			http.Redirect(w, r, "/jobs/HERE", http.StatusTemporaryRedirect)
		default:
			job(w)
		}
	}))
	defer home.Close()

	checked := 0
	own := &http.Client{
		Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			mu.Lock()
			checked++
			mu.Unlock()
			return nil
		},
	}
	clients := map[string]*foreman.Client{
		"the client's own http.Client":              foreman.New(home.URL, "tok"),
		"a bare http.Client":                        foreman.New(home.URL, "tok", foreman.WithHTTPClient(&http.Client{})),
		"an http.Client with its own CheckRedirect": foreman.New(home.URL, "tok", foreman.WithHTTPClient(own)),
	}
	for name, c := range clients {
		mu.Lock()
		clear(auth)
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, id := range []foreman.JobID{"AWAY", "MOVED"} {
			if _, err := c.Get(ctx, id); err != nil {
				t.Fatalf("%s: Get(%s): %v", name, id, err)
			}
		}
		cancel()
		mu.Lock()
		if got := auth["elsewhere /jobs/STOLEN"]; got != "" {
			t.Errorf("%s: the other origin got Authorization %q", name, got)
		}
		if got := auth["home /jobs/HERE"]; got != "Bearer tok" {
			t.Errorf("%s: a redirect within foreman's origin lost the token: %q", name, got)
		}
		mu.Unlock()
	}
	if checked != 2 {
		t.Errorf("the given client's CheckRedirect ran %d times, want 2", checked)
	}
	if own.Timeout != 5*time.Second || own.CheckRedirect == nil {
		t.Error("the given http.Client was changed")
	}
}
