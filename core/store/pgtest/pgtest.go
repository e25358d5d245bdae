// Package pgtest gives tests a real, empty PostgreSQL database.
//
// URL returns a fresh database per call. When PEAT_TEST_DATABASE_URL is set
// (CI starts one server with start-postgres.sh and every test package shares
// it) a uniquely named database is created there and dropped at cleanup.
// Otherwise one throwaway PostgreSQL 15 cluster is started per test binary
// (see Main) from PEAT_PG_BIN or /usr/lib/postgresql/15/bin.
//
// A test that needs Postgres and cannot get it fails; it never skips, so a
// missing server can never turn into a green run.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding an existing server's admin URL.
const EnvURL = "PEAT_TEST_DATABASE_URL"

// EnvBin overrides the directory holding initdb and postgres.
const EnvBin = "PEAT_PG_BIN"

// DefaultBin is where Debian installs PostgreSQL 15.
const DefaultBin = "/usr/lib/postgresql/15/bin"

var (
	mainCalled atomic.Bool
	startOnce  sync.Once
	started    *cluster
	startErr   error
	dbCounter  atomic.Int64
)

// Main runs the tests and then stops the cluster the binary started, if
// any. Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if started != nil {
		if err := started.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping postgres: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// URL returns the connection URL of a new, empty database that is dropped
// when t finishes. It fails t if no server can be reached or started.
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		if !mainCalled.Load() {
			// Without Main nobody would stop the cluster and it would outlive
			// the test binary.
			t.Fatalf("pgtest: %s is unset and TestMain does not call pgtest.Main, so no cluster can be started and stopped", EnvURL)
		}
		startOnce.Do(func() { started, startErr = startCluster() })
		if startErr != nil {
			t.Fatalf("pgtest: cannot start a throwaway PostgreSQL: %v", startErr)
		}
		admin = started.url
	}
	name := fmt.Sprintf("peat_test_%d_%d_%s", os.Getpid(), dbCounter.Add(1), randHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends sessions a test forgot to close, so a leak cannot make
		// the drop (and the next run's disk) fail.
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase swaps the database name in a postgres:// URL.
func withDatabase(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cluster is a postgres server process owned by this test binary.
type cluster struct {
	dir  string
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	log  *os.File
}

func startCluster() (*cluster, error) {
	bin := os.Getenv(EnvBin)
	if bin == "" {
		bin = DefaultBin
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s (install postgresql-15, set %s, or set %s to a running server): %w", b, bin, EnvBin, EnvURL, err)
		}
	}
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cred, err := credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// The port is found free and then handed to postgres, which can lose a
	// race with another process; a few attempts make that harmless.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		c, err := launch(bin, dir, data, cred)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

const (
	dirPrefix = "peat-pgtest-"
	// ownerFile holds the pid of the test binary that made the directory.
	ownerFile = "owner.pid"
)

// sweepStale removes cluster directories left by test binaries that were
// killed (SIGKILL leaves no chance to clean up; their server already went
// down with them through Pdeathsig).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 probes for the process; ESRCH means it is gone.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// credential returns the identity postgres runs as: initdb and postgres
// refuse to run as root, so as root the cluster belongs to the postgres OS
// user; otherwise it runs as the current user.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a 'postgres' OS user to own the cluster: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(bin, dir, data string, cred *syscall.Credential) (*cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		// Durability is irrelevant for a throwaway cluster; these make
		// commits cheap on the shared CI cores.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// If the test binary is killed (go test -timeout, ^C) the server
		// gets a fast shutdown instead of outliving it.
		Pdeathsig: syscall.SIGINT,
		Setpgid:   true,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	c := &cluster{dir: dir, cmd: cmd, done: make(chan struct{}), log: logf,
		url: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	go func() { _ = cmd.Wait(); close(c.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.url)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return c, nil
		}
		select {
		case <-c.done:
			logf.Close()
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("postgres exited during start-up: %s", bytes.TrimSpace(out))
		default:
		}
		if time.Now().After(deadline) {
			_ = c.stop()
			return nil, fmt.Errorf("postgres did not accept connections within 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks for a fast shutdown, kills after a grace period and removes the
// cluster's directory.
func (c *cluster) stop() error {
	var errs []error
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			errs = append(errs, errors.New("postgres ignored SIGINT for 20s and was killed"))
		}
	}
	c.log.Close()
	if err := os.RemoveAll(c.dir); err != nil && !strings.Contains(err.Error(), "no such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
