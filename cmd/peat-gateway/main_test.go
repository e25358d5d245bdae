package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin is the real binary, built once for the process tests below.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peat-gw-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "peat-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestCLI(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		code int
		out  string
	}{
		{[]string{"--help"}, nil, 0, "peat-gateway [serve]"},
		{[]string{"help"}, nil, 0, "migrate-keys"},
		{[]string{"version"}, nil, 0, "peat-gateway "},
		{[]string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{[]string{"serve"}, []string{"PEAT_STORAGE_BACKEND=mongo"}, 2, "PEAT_STORAGE_BACKEND"},
		{nil, []string{"PEAT_LOG_FORMAT=xml"}, 2, "PEAT_LOG_FORMAT"},
		{[]string{"migrate-keys"}, []string{"PEAT_GATEWAY_DATA_DIR=" + t.TempDir()}, 1, "No key provider configured"},
		{[]string{"loadtest", "--scenario", "nope"}, nil, 1, `unknown scenario "nope"`},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.out) {
			t.Errorf("%v %v: exit %d, output %q; want exit %d containing %q", c.args, c.env, code, out, c.code, c.out)
		}
	}
}

// TestServeAndGracefulShutdown starts the binary, waits for readiness,
// holds a request in flight across SIGTERM and checks it completes.
func TestServeAndGracefulShutdown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PEAT_GATEWAY_BIND="+addr, "PEAT_GATEWAY_DATA_DIR="+t.TempDir(), "PEAT_LOG_FORMAT=json")
	stderr, _ := cmd.StderrPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	base := "http://" + addr
	for {
		r, err := http.Get(base + "/ready")
		if err == nil && r.StatusCode == 200 {
			r.Body.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("not ready within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("start-up to ready: %s", time.Since(start))
	if rss, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
		for _, l := range strings.Split(string(rss), "\n") {
			if strings.HasPrefix(l, "VmRSS") {
				t.Logf("idle %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}

	// A request whose body arrives slowly is in flight when SIGTERM lands.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"org_id":"late","display_name":"Late"}`
	fmt.Fprintf(conn, "POST /orgs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	io.WriteString(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request lost: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"org_id":"late"`)) {
		t.Fatalf("in-flight request: %d %s", resp.StatusCode, b)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop after SIGTERM")
	}
	var all []string
	for l := range logs {
		all = append(all, l)
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{`"msg":"peat-gateway ready"`, `"msg":"shutting down`, `"msg":"stopped"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("log lacks %s:\n%s", want, joined)
		}
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still accepting after shutdown")
	}
}
