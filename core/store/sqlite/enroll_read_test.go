package sqlite

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// TestEnrollReadMatchesApprovalsSince checks Enroll's one-statement read
// counts the rate window exactly as approvalsSince (and a plain count) do,
// with and without a limit cutting the count short.
func TestEnrollReadMatchesApprovalsSince(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: model.DefaultQuotas()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFormation(bg, model.Formation{OrgID: "acme", AppID: "a", Status: model.FormationActive}, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const base = 100 * hourMs
	seedAudit(t, s, rng, base)
	// Ascending, as the clock moves: approvalsSince drops buckets older
	// than two hours before the window it is asked about.
	sinces := make([]int64, 300)
	for i := range sinces {
		sinces[i] = int64(base) + rng.Int64N(3*hourMs)
		if i%10 == 0 {
			sinces[i] -= sinces[i] % minuteMs
		}
	}
	slices.Sort(sinces)
	for _, since := range sinces {
		limit := []int64{0, 1, 5, 50, 500, 1000, 1 << 40}[rng.IntN(7)]
		var want, got, slow int64
		err := s.write(bg, func(tx *txn) error {
			r, err := tx.enrollRead("acme", "a", "", since, limit)
			if err != nil {
				return err
			}
			if !r.org || r.status.String != string(model.FormationActive) || r.tokenFound {
				return fmt.Errorf("read %+v", r)
			}
			got = r.approvals
			if want, err = tx.approvalsSince("acme", since, limit); err != nil {
				return err
			}
			return tx.row(`SELECT count(*) FROM enrollment_audit WHERE org_id = 'acme' AND approved = 1 AND timestamp_ms >= ?`, since).Scan(&slow)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got != want || (got < limit) != (slow < limit) || (limit == 1<<40 && got != slow) {
			t.Fatalf("since %d limit %d: enrollRead %d, approvalsSince %d, count %d", since, limit, got, want, slow)
		}
	}
}

// TestWriterPragmas checks the writer-only tuning is applied.
func TestWriterPragmas(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	for pragma, want := range map[string]string{"temp_store": "2", "wal_autocheckpoint": strconv.Itoa(4 * checkpointPages), "synchronous": "2"} {
		var got string
		if err := s.wc.QueryRowContext(bg, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("writer %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
}

// TestCheckpointerCopiesWAL checks that the WAL is copied back into the
// database file by the checkpointer, long before the writer's own automatic
// checkpoint would start.
func TestCheckpointerCopiesWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openAt(t, path)
	defer s.Close()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := 0; i < 300; i++ {
		if err := s.CreateOrg(bg, model.Organization{OrgID: fmt.Sprintf("org%03d", i), DisplayName: strings.Repeat("x", 500),
			Quotas: model.DefaultQuotas()}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: the WAL was never checkpointed", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
