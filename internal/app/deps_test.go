package app

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mainPackage is the operator's binary.
const mainPackage = "github.com/usersync/usersync-operator"

// TestBinaryLinksNoEmulator: the operator's binary does not link the
// vendor emulators, their harness or net/http/httptest; they are for
// tests, benchmarks and the demo only.
func TestBinaryLinksNoEmulator(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the binary's dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", mainPackage).Output()
	if err != nil {
		msg := ""
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", mainPackage, err, msg)
	}
	// go test caches a passing result by the files the test opens: open
	// the main package's, which are not in this test's binary, so that an
	// import added there runs the test again.
	dir, err := exec.Command(goTool, "list", "-f", "{{.Dir}}", mainPackage).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", mainPackage, err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(dir)), "*.go"))
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slices.Contains(deps, mainPackage+"/internal/app") {
		t.Fatalf("go list -deps listed %d packages, not the binary's: %v", len(deps), deps)
	}
	for _, p := range deps {
		if forbidden(p) {
			t.Errorf("the operator's binary links %s", p)
		}
	}
}

// forbidden reports whether a package is test-only code the binary must
// not link.
func forbidden(p string) bool {
	const providers = mainPackage + "/internal/providers/"
	switch {
	case p == "net/http/httptest":
		return true
	case p == providers+"emulation" || strings.HasPrefix(p, providers+"emulation/"):
		return true
	case strings.HasPrefix(p, mainPackage+"/") && (strings.HasSuffix(p, "/emulator") || strings.Contains(p, "/emulator/")):
		return true
	}
	return false
}
