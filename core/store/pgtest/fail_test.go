package pgtest

import (
	"fmt"
	"strings"
	"testing"
)

// fatalTB records Fatalf and stops the caller like the real one does.
type fatalTB struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatalTB) Helper()        {}
func (f *fatalTB) Cleanup(func()) {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func callURL(tb *fatalTB) (failed bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
			failed = true
		}
	}()
	URL(tb)
	return false
}

// An unreachable server must fail the test, never skip it or hand out a URL.
func TestURLFailsWhenServerUnreachable(t *testing.T) {
	t.Setenv(EnvURL, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	tb := &fatalTB{TB: t}
	if !callURL(tb) || !strings.Contains(tb.msg, "create database") {
		t.Fatalf("URL with an unreachable server did not fail the test (message %q)", tb.msg)
	}
}

// Missing PostgreSQL binaries are an error that says how to fix it.
func TestStartClusterFailsWithoutBinaries(t *testing.T) {
	t.Setenv(EnvBin, t.TempDir())
	c, err := startCluster()
	if err == nil {
		c.stop()
		t.Fatal("startCluster succeeded without binaries")
	}
	if !strings.Contains(err.Error(), "initdb not found") || !strings.Contains(err.Error(), EnvURL) {
		t.Fatalf("unhelpful error: %v", err)
	}
}
