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

// TestOfficialOllamaClientModule runs the tests of ./ollamacompat, the module that drives foreman
// with the official Ollama Go client. It is a module of its own (Ollama v0.11.4 needs Go 1.24,
// this one stays at 1.22 without dependencies), so `go test ./...` here would skip it otherwise.
func TestOfficialOllamaClientModule(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("skipped in -short mode: it starts foreman")
	}
	if minor, ok := goMinor(runtime.Version()); ok && minor < 24 {
		t.Skipf("ollamacompat needs Go 1.24 (github.com/ollama/ollama v0.11.4); this is %s", runtime.Version())
	}
	// Checked here, not only inside the child, so a missing deno fails this test by name.
	testenv.Deno(t)
	testenv.RepoRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	dir, err := filepath.Abs("ollamacompat")
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
		t.Error("ollamacompat ran no tests")
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
