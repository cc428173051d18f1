// Package testenv starts the real processes the client's integration tests run against: the
// project's Ollama simulator (sim/main.ts) and a foreman daemon (main.ts) in
// front of it, each on a free port, both stopped when the test ends. When deno or those files
// are missing the test fails with the reason; -short skips these tests, and so does running
// outside the foreman repository.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// unavailable ends a test that cannot start foreman here. go test ./... shows a skip only with
// -v, so a skipped integration test would pass as green without foreman having been tested: it
// fails instead, and -short is the way to ask for the unit tests alone.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	t.Fatalf("integration test cannot run: %s; run `go test -short ./...` for the unit tests alone", reason)
}

// startTimeout bounds each process start; the first deno run may compile and fetch npm packages.
const startTimeout = 90 * time.Second

// Foreman is a running foreman daemon in front of a running simulator.
type Foreman struct {
	URL           string // http://127.0.0.1:PORT
	Token         string
	WebhookSecret string
	SimulatorURL  string
	// Simulated is true when the target is the project's simulator, whose answers are known:
	// it calls the first tool it is given and thinks "t1 t2" when asked to.
	Simulated bool
	Dir       string // holds the database

	proc *process
}

// Stop stops the foreman process (the simulator keeps running), for tests of an unreachable
// foreman.
func (f *Foreman) Stop() {
	f.proc.stop()
}

// Options change how foreman is started; zero values give the defaults noted.
type Options struct {
	// Token is the inbound bearer token (a random one by default).
	Token string
	// WebhookSecret signs webhooks (a random one by default).
	WebhookSecret string
	// WebhookHosts is FOREMAN_WEBHOOK_HOSTS ("127.0.0.1" by default; "-" for none).
	WebhookHosts string
	// Args are further foreman flags, such as "--inline-limit", "64".
	Args []string
	// SimulatorURL reuses a running simulator instead of starting one.
	SimulatorURL string
}

// RepoRoot is the foreman repository holding this module: $FOREMAN_REPO, else the nearest
// parent directory with both deno.json and clients/go.
func RepoRoot(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("FOREMAN_REPO"); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if exists(filepath.Join(dir, "deno.json")) && exists(filepath.Join(dir, "clients", "go")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			// The module was fetched on its own: there is no foreman to test against.
			t.Skip("integration test skipped: no foreman repository (deno.json beside clients/go) above the working directory; set FOREMAN_REPO")
		}
		dir = parent
	}
}

// Deno is the deno binary: $DENO, else deno on PATH; the test fails without one (see
// unavailable). In -short mode every integration test is skipped here.
func Deno(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	if d := os.Getenv("DENO"); d != "" {
		return d
	}
	d, err := exec.LookPath("deno")
	if err != nil {
		unavailable(t, "deno is not on PATH (install Deno 2 or set $DENO)")
	}
	return d
}

// Simulator starts the Ollama simulator and returns its URL. $FOREMAN_TEST_OLLAMA_URL names a
// running target to use instead (a real Ollama, for instance).
func Simulator(t testing.TB) string {
	t.Helper()
	if url := os.Getenv("FOREMAN_TEST_OLLAMA_URL"); url != "" {
		return url
	}
	root := RepoRoot(t)
	script := filepath.Join(root, "sim", "main.ts")
	requireFile(t, script)
	p := start(t, "ollama simulator", root, Deno(t), "run", "--allow-net", script, "--port", "0")
	var url string
	p.waitLine(t, p.stdout, func(line string) bool {
		var msg struct {
			Listening string `json:"listening"`
		}
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Listening != "" {
			url = msg.Listening
			return true
		}
		return false
	})
	return url
}

// Start starts a simulator (unless opts names one) and a foreman in front of it.
func Start(t testing.TB, opts Options) *Foreman {
	t.Helper()
	root := RepoRoot(t)
	deno := Deno(t)
	mainTS := filepath.Join(root, "main.ts")
	requireFile(t, mainTS)
	f := &Foreman{Token: opts.Token, WebhookSecret: opts.WebhookSecret, SimulatorURL: opts.SimulatorURL, Dir: t.TempDir()}
	if f.Token == "" {
		f.Token = "tok-" + random()
	}
	if f.WebhookSecret == "" {
		f.WebhookSecret = "secret-" + random()
	}
	if f.SimulatorURL == "" {
		f.SimulatorURL = Simulator(t)
		f.Simulated = os.Getenv("FOREMAN_TEST_OLLAMA_URL") == ""
	}
	hosts := opts.WebhookHosts
	if hosts == "" {
		hosts = "127.0.0.1"
	}
	flags := []string{
		"--addr", "127.0.0.1:0",
		"--db", filepath.Join(f.Dir, "f.db"),
		"--ollama-url", f.SimulatorURL,
		"--token", f.Token,
		"--webhook-secret", f.WebhookSecret,
		"--poll-interval", "1s",
		"--retry-base", "100ms",
		"--webhook-retry-base", "100ms",
	}
	if hosts != "-" {
		flags = append(flags, "--webhook-hosts", hosts)
	}
	flags = append(flags, opts.Args...)
	// The daemon runs in the sandbox its configuration implies, as `deno task start` runs it, so
	// these tests also prove that webhooks reach an ephemeral port under those permissions.
	perms := permissions(t, f.Dir, deno, mainTS, flags)
	args := append(append(append([]string{"run"}, perms...), mainTS, "serve"), flags...)
	p := start(t, "foreman", f.Dir, deno, args...)
	f.proc = p
	p.waitLine(t, p.stderr, func(line string) bool {
		var msg struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Msg == "listening" && msg.Addr != "" {
			f.URL = "http://" + msg.Addr
			return true
		}
		return false
	})
	return f
}

// permissions asks `foreman permissions` for the Deno flags the configuration in flags needs.
func permissions(t testing.TB, dir, deno, mainTS string, flags []string) []string {
	t.Helper()
	args := append([]string{"run", "--allow-read", "--allow-env=FOREMAN_*", mainTS, "permissions"}, flags...)
	cmd := exec.Command(deno, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("foreman permissions failed: %v\n%s%s", err, out, stderr)
	}
	perms := strings.Fields(string(out))
	if len(perms) == 0 {
		t.Fatalf("foreman permissions printed nothing")
	}
	return perms
}

// childEnv is this process's environment without FOREMAN_* settings, which would override the
// flags the tests choose.
func childEnv() []string {
	env := []string{"NO_COLOR=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FOREMAN_") {
			env = append(env, kv)
		}
	}
	return env
}

// Models waits for foreman's inventory and returns a model for chat and generate and one for
// embeddings (named like "embed", else the chat model).
func (f *Foreman) Models(t testing.TB) (chat, embed string) {
	t.Helper()
	for _, name := range f.WaitForModels(t) {
		isEmbed := strings.Contains(name, "embed")
		if isEmbed && embed == "" {
			embed = name
		}
		if !isEmbed && chat == "" {
			chat = name
		}
	}
	if chat == "" {
		t.Fatalf("foreman at %s lists only embedding models", f.URL)
	}
	if embed == "" {
		embed = chat
	}
	return chat, embed
}

// WaitForModels waits until foreman's inventory lists at least one model and returns the
// names, so tests do not race the first inventory poll.
func (f *Foreman) WaitForModels(t testing.TB) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, f.URL+"/api/tags", nil)
		req.Header.Set("Authorization", "Bearer "+f.Token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var tags struct {
				Models []struct {
					Name string `json:"name"`
				} `json:"models"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&tags)
			resp.Body.Close()
			if len(tags.Models) > 0 {
				names := make([]string, len(tags.Models))
				for i, m := range tags.Models {
					names[i] = m.Name
				}
				return names
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("foreman at %s listed no models within 30s (last error: %v)", f.URL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is a child whose output is kept for the test log.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr chan string // lines, until the stream ends
	mu             sync.Mutex
	log            bytes.Buffer
	exited         chan struct{}
}

func start(t testing.TB, name, dir, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, cmd: cmd, stdout: make(chan string, 64), stderr: make(chan string, 64), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", name, err)
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go p.pump(outPipe, p.stdout, &pumps)
	go p.pump(errPipe, p.stderr, &pumps)
	go func() {
		pumps.Wait()
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// pump copies lines to the log and, while someone may be waiting, to ch.
func (p *process) pump(r io.Reader, ch chan string, done *sync.WaitGroup) {
	defer done.Done()
	defer close(ch)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		p.mu.Unlock()
		select {
		case ch <- line:
		default: // nobody is waiting for lines any more; the log keeps them
		}
	}
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLine reads ch until match accepts a line, the process exits or the start timeout passes.
func (p *process) waitLine(t testing.TB, ch <-chan string, match func(string) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		select {
		case line, ok := <-ch:
			if !ok {
				<-p.exited
				t.Fatalf("%s exited (%v) before it was ready:\n%s", p.name, p.cmd.ProcessState, p.output())
			}
			if match(line) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s was not ready within %s:\n%s", p.name, startTimeout, p.output())
		}
	}
}

// stop asks the process to end (foreman finishes its current work on SIGTERM), then kills it
// if it lingers. Stopping twice is harmless.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func requireFile(t testing.TB, path string) {
	t.Helper()
	if !exists(path) {
		unavailable(t, path+" does not exist")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func random() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
