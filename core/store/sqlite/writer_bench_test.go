package sqlite

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// BenchmarkWriterEnrollParallel measures the group committer's throughput
// for enrollments with certificates from 32 concurrent callers, shaped like
// the enroll load test: 10 orgs of one formation each, Open and (every
// other org) token enrollments, serials as random as the real ones (a hash
// of the certificate), realistic field sizes. Besides enroll/s it reports
// the process's CPU and the bytes it wrote (nearly all WAL frames) per
// enrollment.
func BenchmarkWriterEnrollParallel(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "g.db"))
	defer s.Close()
	q := model.DefaultQuotas()
	q.MaxEnrollmentsPerHour, q.MaxPeersPerFormation = math.MaxUint32, math.MaxUint32
	const orgs = 10
	orgNames := seedBenchOrgs(b, s, q, orgs)
	for _, org := range orgNames {
		if err := s.CreateToken(bg, model.EnrollmentToken{TokenID: "tk", OrgID: org, AppID: "app1", Label: "x"}); err != nil {
			b.Fatal(err)
		}
	}
	const now = 100 * hourMs
	var ctr atomic.Int64
	b.ResetTimer()
	cpu0, w0 := cpuUs(), writtenBytes()
	b.SetParallelism(16) // × GOMAXPROCS 2 = 32 callers
	b.RunParallel(func(pb *testing.PB) {
		raw := make([]byte, 170)
		key := make([]byte, 32)
		for pb.Next() {
			i := ctr.Add(1)
			o := i % orgs
			org := orgNames[o]
			ts := uint64(now + i/4)
			rand.Read(raw)
			rand.Read(key)
			serial := hex.EncodeToString(raw[:16])
			aid := hex.EncodeToString(raw[16:24])
			node := "node-" + strconv.FormatInt(i, 10)
			tx := store.EnrollTx{OrgID: org, AppID: "app1", NowMs: ts, RateLimit: math.MaxUint32, PeerLimit: math.MaxUint32,
				Audit: model.AuditEntry{AuditID: aid, OrgID: org, AppID: "app1", IdpID: "open", Subject: node, TimestampMs: ts,
					Reason: "open enrollment", Serial: &serial,
					Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}},
				Certificate: &model.Certificate{Serial: serial, PeerID: node, NodeID: node, SubjectKey: hex.EncodeToString(key),
					Fingerprint: hex.EncodeToString(key[:8]), Tier: "Endpoint", IssuedAt: ts, ExpiresAt: ts + 1000, AuditID: aid, Raw: raw}}
			if o%2 == 1 {
				tx.TokenID = "tk"
			}
			if err := s.Enroll(bg, tx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enroll/s")
	b.ReportMetric((cpuUs()-cpu0)/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "written-B/op")
}

// seedBenchOrgs creates orgs org0…org{n-1} with quotas q, each with an
// active formation app1, and returns their ids.
func seedBenchOrgs(b *testing.B, s *Store, q model.OrgQuotas, n int) []string {
	b.Helper()
	var ids []string
	for o := 0; o < n; o++ {
		org := fmt.Sprintf("org%d", o)
		if err := s.CreateOrg(bg, model.Organization{OrgID: org, Quotas: q}); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateFormation(bg, model.Formation{OrgID: org, AppID: "app1", Status: model.FormationActive}, nil); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, org)
	}
	return ids
}

// writtenBytes is what this process has passed to write system calls so
// far (wchar of /proc/self/io), or 0 where that is not available.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkWriterDocsParallel measures document throughput with a few
// concurrent batch writers, as the docs service's committers call it.
func BenchmarkWriterDocsParallel(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "g.db"))
	defer s.Close()
	q := model.DefaultQuotas()
	q.MaxDocumentsPerFormation = math.MaxUint32
	for o := 0; o < 4; o++ {
		org := fmt.Sprintf("org%d", o)
		if err := s.CreateOrg(bg, model.Organization{OrgID: org, Quotas: q}); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateFormation(bg, model.Formation{OrgID: org, AppID: "app1", Status: model.FormationActive}, nil); err != nil {
			b.Fatal(err)
		}
	}
	const batch = 32
	var ctr atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuUs()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			org := fmt.Sprintf("org%d", g)
			ws := make([]store.DocumentWrite, batch)
			for {
				base := ctr.Add(batch) - batch
				if base >= int64(b.N) {
					return
				}
				for j := range ws {
					n := base + int64(j)
					ws[j] = store.DocumentWrite{OrgID: org, AppID: "app1", DocID: fmt.Sprintf("doc%d", n%4096),
						Body:        []byte(fmt.Sprintf(`{"n":%d,"name":"sensor-%d","temp":21.5}`, n, n%4096)),
						TimestampMs: 1, DocLimit: math.MaxUint32}
				}
				if _, err := s.WriteDocuments(bg, ws); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric((cpuUs()-cpu0)/float64(b.N), "cpu-µs/doc")
}

// cpuUs is the process's user+system CPU time in microseconds.
func cpuUs() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

// BenchmarkWriteDocumentsBatch measures one WriteDocuments call the way the
// docs service makes them under the cdc-accept load: batches of 16 updates
// of random documents (10,000 of them) over 10 orgs of one formation each,
// one batch at a time. Per batch, the writer's fixed costs (formation
// checks, counters, commit and fsync) and its per-document costs.
func BenchmarkWriteDocumentsBatch(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "g.db"))
	defer s.Close()
	q := model.DefaultQuotas()
	q.MaxDocumentsPerFormation = math.MaxUint32
	orgs, docs := 10, 10000
	batch := benchBatch
	seedBenchOrgs(b, s, q, orgs)
	n := 0
	mk := func(ws []store.DocumentWrite) {
		for j := range ws {
			n++
			d := (n * 7919) % docs
			ws[j] = store.DocumentWrite{OrgID: fmt.Sprintf("org%d", d%orgs), AppID: "app1", DocID: fmt.Sprintf("d%d", d),
				Body:        []byte(fmt.Sprintf(`{"doc":%d,"pad":"%064d","seq":%d}`, d, 0, n)),
				ActorID:     "api",
				TimestampMs: uint64(n), DocLimit: math.MaxUint32}
		}
	}
	// Every document exists, as in a long run.
	ws := make([]store.DocumentWrite, 250)
	for i := 0; i < docs/len(ws); i++ {
		mk(ws)
		if _, err := s.WriteDocuments(bg, ws); err != nil {
			b.Fatal(err)
		}
	}
	ws = ws[:batch]
	b.ResetTimer()
	cpu0 := cpuUs()
	for b.Loop() {
		mk(ws)
		if _, err := s.WriteDocuments(bg, ws); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric((cpuUs()-cpu0)/float64(b.N), "cpu-µs/batch")
}

var benchBatch = func() int {
	if n, err := strconv.Atoi(os.Getenv("PEAT_BENCH_BATCH")); err == nil && n > 0 {
		return n
	}
	return 16
}()
