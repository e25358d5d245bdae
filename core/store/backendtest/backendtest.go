// Package backendtest runs a test against every storage backend: a fresh
// SQLite file and a fresh Postgres database (via pgtest). Packages above the
// store use it so that each behaviour is proven on both engines; a test
// binary using it must call pgtest.Main from TestMain.
package backendtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
)

// Names lists the backends in the order Each runs them.
var Names = []string{"sqlite", "postgres"}

// Open returns a fresh, empty store of the named backend, closed when tb ends.
func Open(tb testing.TB, name string) store.Store {
	tb.Helper()
	var (
		st  store.Store
		err error
	)
	switch name {
	case "sqlite":
		st, err = sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "gw.db"))
	case "postgres":
		st, err = postgres.Open(context.Background(), pgtest.URL(tb))
	default:
		tb.Fatalf("backendtest: unknown backend %q", name)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// Each runs f as a subtest per backend with a fresh store.
func Each(t *testing.T, f func(t *testing.T, st store.Store)) {
	for _, name := range Names {
		t.Run(name, func(t *testing.T) { f(t, Open(t, name)) })
	}
}

// EachB is Each for benchmarks.
func EachB(b *testing.B, f func(b *testing.B, st store.Store)) {
	for _, name := range Names {
		b.Run(name, func(b *testing.B) { f(b, Open(b, name)) })
	}
}
