package foreman_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/foreman-dev/foreman/clients/go/internal/testenv"
)

// TestOfficialOllamaClientModules runs the tests of the nested modules that drive foreman with
// the official Ollama Go client: ./ollamacompat (v0.11.4, every call through BearerTransport) and
// ./ollamacompat012 (v0.12.6, what the client shows for foreman's 401). Each is a module of its
// own (Ollama needs a newer Go than this module's 1.22, and one module holds one Ollama version),
// so `go test ./...` here would skip them otherwise.
func TestOfficialOllamaClientModules(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("skipped in -short mode: it starts foreman")
	}
	// Checked here, not only inside the child, so a missing deno fails this test by name.
	testenv.Deno(t)
	testenv.RepoRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	modules := []struct {
		dir     string
		ollama  string
		goMinor int // the go line of github.com/ollama/ollama's go.mod at that version
	}{
		{"ollamacompat", "v0.11.4", 24},
		{"ollamacompat012", "v0.12.6", 24},
	}
	for _, m := range modules {
		t.Run(m.dir, func(t *testing.T) {
			t.Parallel()
			if minor, ok := goMinor(runtime.Version()); ok && minor < m.goMinor {
				t.Skipf("%s needs Go 1.%d (github.com/ollama/ollama %s); this is %s", m.dir, m.goMinor, m.ollama, runtime.Version())
			}
			dir, err := filepath.Abs(m.dir)
			if err != nil {
				t.Fatal(err)
			}
			trackModule(dir)

			// -count=1: the nested module drives a live foreman, so a cached pass proves nothing.
			args := []string{"test", "-count=1"}
			if testing.Verbose() {
				args = append(args, "-v")
			}
			cmd := exec.Command(goBin, append(args, "./...")...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go test in %s failed: %v\n%s", dir, err, out)
			}
			t.Logf("%s", out)
			if strings.Contains(string(out), "[no test files]") {
				t.Errorf("%s ran no tests", m.dir)
			}
		})
	}
}

// goMinor is 24 for "go1.24.3"; ok is false for development builds.
func goMinor(version string) (int, bool) {
	rest, ok := strings.CutPrefix(version, "go1.")
	if !ok {
		return 0, false
	}
	if i := strings.IndexAny(rest, ".rcbeta"); i >= 0 {
		rest = rest[:i]
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// trackModule stats the nested module's files so this test's cached result is dropped when they
// change: the child `go test` reads them, not this process, and `go test` only notices files
// this process touched inside the module.
func trackModule(dir string) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, _ = os.Stat(path)
		}
		return nil
	})
}
