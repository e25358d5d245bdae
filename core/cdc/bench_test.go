package cdc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
)

// BenchmarkDrainToJetStream measures the dispatcher alone: a backlog of
// b.N committed changes (1,000 documents, ~250-byte bodies) is delivered
// to an embedded JetStream server and the rate is reported as events/s.
// This is the store-and-forward drain and the sustained ceiling of one
// NATS sink, without the HTTP accept path competing for the CPU.
//
//	go test ./core/cdc -run '^$' -bench DrainToJetStream -benchtime 100000x
func BenchmarkDrainToJetStream(b *testing.B) {
	for _, be := range []string{"sqlite", "postgres"} {
		b.Run(be, func(b *testing.B) {
			var st store.Store
			var err error
			if be == "sqlite" {
				st, err = sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gw.db"))
			} else {
				st, err = postgres.Open(context.Background(), pgtest.URL(b))
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ten := newTenant(st)
			mkOrg(b, ten, "acme", "app")
			ns := startNATS(b)
			f := sinks.NewFactory(sinks.Config{NATSURL: ns.url()})
			defer f.Close()
			pad := `,"pad":"` + fmt.Sprintf("%0160d", 0) + `"`
			var cs []store.DocumentWrite
			for i := range b.N {
				cs = append(cs, store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: fmt.Sprintf("doc-%04d", i%1000), ActorID: "bench",
					Body: []byte(fmt.Sprintf(`{"n":%d%s}`, i, pad)), TimestampMs: uint64(time.Now().UnixMilli()), DocLimit: 1 << 30})
				if len(cs) == 256 || i == b.N-1 {
					if _, err := st.WriteDocuments(context.Background(), cs); err != nil {
						b.Fatal(err)
					}
					cs = cs[:0]
				}
			}
			sink, err := ten.CreateSink(context.Background(), "acme", natsSink("bench"), nil)
			if err != nil {
				b.Fatal(err)
			}
			o := fastOpts()
			o.BatchSize = 1024
			b.ResetTimer()
			start := time.Now()
			d := startDispatcher(b, st, f, o)
			last, err := st.LastSeq(context.Background(), "acme")
			if err != nil {
				b.Fatal(err)
			}
			// Poll the cursor (a key lookup), not the status (a count over
			// the backlog that would compete with the drain).
			for {
				p, err := st.GetProgress(context.Background(), sink.SinkID)
				if err != nil {
					b.Fatal(err)
				}
				if p.Cursor >= last {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			d.Close()
		})
	}
}
