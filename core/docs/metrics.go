package docs

import "github.com/prometheus/client_golang/prometheus"

// Operations and refusal reasons, as metric label values. Counters are
// resolved once here so the write path never hashes label values.
const (
	opUpsert = iota
	opDelete
	opTest
	numOps
)

const (
	reasonInvalid = iota
	reasonNotFound
	reasonSuspended
	reasonQuota
	reasonOutboxFull
	reasonError
	numReasons
)

var (
	opNames     = [numOps]string{"upsert", "delete", "test"}
	reasonNames = [numReasons]string{"invalid", "not_found", "suspended", "quota", "outbox_full", "error"}
)

type metrics struct {
	accepted  [numOps]prometheus.Counter
	unchanged prometheus.Counter
	rejected  [numOps][numReasons]prometheus.Counter
	batch     prometheus.Histogram
	commit    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, queued func() float64) *metrics {
	changes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peat_gw_docs_changes_total",
		Help: "Document changes by operation and outcome (accepted: an event was emitted; unchanged: content equal to the stored state; rejected: refused, see reason).",
	}, []string{"op", "outcome", "reason"})
	m := &metrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peat_gw_docs_batch_size",
			Help:    "Document writes per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peat_gw_docs_commit_seconds",
			Help:    "Duration of one group-commit transaction, fsync included.",
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2},
		}),
	}
	for op := range numOps {
		m.accepted[op] = changes.WithLabelValues(opNames[op], "accepted", "")
		for r := range numReasons {
			m.rejected[op][r] = changes.WithLabelValues(opNames[op], "rejected", reasonNames[r])
		}
	}
	m.unchanged = changes.WithLabelValues("upsert", "unchanged", "")
	if reg != nil {
		reg.MustRegister(changes, m.batch, m.commit, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peat_gw_docs_queue_depth",
			Help: "Document writes waiting for a committer.",
		}, queued))
	}
	return m
}

func (m *metrics) reject(op, reason int) { m.rejected[op][reason].Inc() }
