package cdc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// The real binary, on SQLite with a NATS sink, is killed with SIGKILL in
// the middle of a burst of document PUTs and started again: every change
// it acknowledged reaches JetStream (duplicates allowed, deduplicable by
// change_hash), in per-document order.
func TestCrashMidBurstLosesNothing(t *testing.T) {
	bin := buildGateway(t)
	ns := startNATS(t)
	data := t.TempDir()
	port := reservePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	env := append(os.Environ(),
		"PEAT_GATEWAY_DATA_DIR="+data,
		fmt.Sprintf("PEAT_GATEWAY_BIND=127.0.0.1:%d", port),
		"PEAT_STORAGE_BACKEND=sqlite",
		"PEAT_CDC_NATS_URL="+ns.url(),
		"PEAT_ADMIN_TOKEN=crash-test",
		"PEAT_LOG_LEVEL=warn",
	)
	gw := runGateway(t, bin, env, base)

	call := func(method, path string, body any) (int, []byte, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer crash-test")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b, nil
	}
	mustCall := func(method, path string, body any, want int) {
		t.Helper()
		st, b, err := call(method, path, body)
		if err != nil || st != want {
			t.Fatalf("%s %s: %d %s %v", method, path, st, b, err)
		}
	}
	mustCall("POST", "/orgs", map[string]string{"org_id": "acme", "display_name": "Acme"}, 200)
	mustCall("POST", "/orgs/acme/formations", map[string]string{"app_id": "app"}, 201)
	mustCall("POST", "/orgs/acme/sinks", map[string]any{"sink_type": map[string]any{"Nats": map[string]string{"subject_prefix": "cdc"}}}, 201)

	// 8 writers, each owning 4 documents and writing versions 1, 2, ...
	// in order; a version counts only once its PUT was answered 200.
	var (
		mu    sync.Mutex
		acked = map[string]bool{} // change_hash
		acks  atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
		quit  atomic.Int64 // writers that stopped
		why   atomic.Value // why the first one stopped
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer quit.Add(1)
			for v := 1; !stop.Load(); v++ {
				for d := range 4 {
					doc := fmt.Sprintf("doc-%d-%d", w, d)
					st, b, err := call("PUT", "/orgs/acme/formations/app/documents/"+doc, map[string]int{"n": v})
					if err != nil || st != 200 {
						why.CompareAndSwap(nil, fmt.Sprintf("PUT %s: %d %s %v", doc, st, b, err))
						return // the gateway is gone
					}
					var r struct {
						ChangeHash string `json:"change_hash"`
					}
					if json.Unmarshal(b, &r) != nil || r.ChangeHash == "" {
						t.Errorf("PUT answer %s", b)
						return
					}
					mu.Lock()
					acked[r.ChangeHash] = true
					mu.Unlock()
					acks.Add(1)
				}
			}
		}()
	}
	eventually(t, 60*time.Second, "500 acknowledged writes", func() bool {
		if quit.Load() == 8 && acks.Load() < 500 {
			t.Fatalf("writers stopped before the kill: %v", why.Load())
		}
		return acks.Load() >= 500
	})
	if err := gw.Process.Kill(); err != nil { // SIGKILL: no shutdown path runs
		t.Fatal(err)
	}
	_ = gw.Wait()
	stop.Store(true)
	wg.Wait()

	runGateway(t, bin, env, base)
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	var got []model.CdcEvent
	eventually(t, 60*time.Second, fmt.Sprintf("%d acknowledged changes in JetStream", want), func() bool {
		if streamCount(t, ns.url(), "acme", "cdc") < want {
			return false
		}
		got = streamEvents(t, ns.url(), "acme", "cdc")
		seen := map[string]bool{}
		for _, ev := range got {
			seen[ev.ChangeHash] = true
		}
		for h := range acked {
			if !seen[h] {
				return false
			}
		}
		return true
	})
	// Per-document order: versions never go back (a duplicate repeats
	// an earlier delivery of the same change, which dedupe removes).
	last := map[string]int{}
	for _, ev := range dedupe(got) {
		var b struct{ N int }
		_ = json.Unmarshal(ev.Patches, &b)
		if b.N <= last[ev.DocumentID] {
			t.Fatalf("document %s: version %d after %d", ev.DocumentID, b.N, last[ev.DocumentID])
		}
		last[ev.DocumentID] = b.N
	}
	t.Logf("%d acknowledged before the kill, %d messages in the stream after restart", want, len(got))
}

// buildGateway compiles cmd/peat-gateway once per test binary.
func buildGateway(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(strings.TrimSpace(string(root)))
	bin := filepath.Join(t.TempDir(), "peat-gateway")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/peat-gateway")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runGateway starts the binary and waits for /health; it is killed at
// cleanup if still running.
func runGateway(t *testing.T, bin string, env []string, base string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(base + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not become healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
