package store

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:generate go run ./internal/geninstrument

// Instrument wraps st so that every operation's latency is recorded in the
// peat_gw_storage_operation_duration_seconds histogram, labelled by method.
func Instrument(st Store, reg prometheus.Registerer) Store {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "peat_gw_storage_operation_duration_seconds",
		Help:    "Storage operation latency by method.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"})
	reg.MustRegister(h)
	return &instrumented{Store: st, h: h}
}

type instrumented struct {
	Store
	h   *prometheus.HistogramVec
	obs sync.Map // op -> prometheus.Observer, so hot paths skip the label hash
}

func (s *instrumented) timer(op string, start time.Time) {
	o, ok := s.obs.Load(op)
	if !ok {
		o, _ = s.obs.LoadOrStore(op, s.h.WithLabelValues(op))
	}
	o.(prometheus.Observer).Observe(time.Since(start).Seconds())
}

// Close closes the wrapped store.
func (s *instrumented) Close() error { return s.Store.Close() }
