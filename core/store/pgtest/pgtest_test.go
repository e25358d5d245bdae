package pgtest_test

import (
	"context"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Each call must hand out a distinct, empty, reachable database.
func TestURLGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		conn, err := pgx.Connect(ctx, pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		var name string
		var tables int
		if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		if seen[name] {
			t.Fatalf("database %s handed out twice", name)
		}
		seen[name] = true
		if tables != 0 {
			t.Fatalf("database %s is not empty: %d tables", name, tables)
		}
	}
}
