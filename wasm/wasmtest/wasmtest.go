// Package wasmtest builds real filter modules inside tests: Go packages with
// the wasip1 toolchain and WAT text with wat2wasm (Debian package wabt). Build
// outputs are memoised per process; Go's build cache makes rebuilds cheap.
package wasmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string][]byte{}
)

// BuildGo compiles the Go main package in dir as a gw/v1 reactor module
// (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared) and returns its bytes.
func BuildGo(tb testing.TB, dir string) []byte {
	tb.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if b, ok := built[abs]; ok {
		return b
	}
	out := filepath.Join(tb.TempDir(), "module.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s for wasip1: %v\n%s", dir, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	built[abs] = b
	return b
}

// Wat2Wasm assembles WebAssembly text with wat2wasm.
func Wat2Wasm(tb testing.TB, wat string) []byte {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if b, ok := built[wat]; ok {
		return b
	}
	dir := tb.TempDir()
	src, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(src, []byte(wat), 0o600); err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("wat2wasm", "--debug-names", src, "-o", out)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("wat2wasm (install Debian package wabt): %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	built[wat] = b
	return b
}
