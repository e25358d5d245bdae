package wasm

import "github.com/prometheus/client_golang/prometheus"

// metrics holds the host's collectors. Labels: tenant, filter (binding name)
// and module (first 12 hex digits of the SHA-256).
type metrics struct {
	calls, eventsIn, eventsOut, traps, timeouts *prometheus.CounterVec
	duration                                    *prometheus.HistogramVec
	instances, breakerOpen                      *prometheus.GaugeVec
}

var filterLabels = []string{"tenant", "filter", "module"}

func newMetrics() *metrics {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(filterLabels[:3:3], extra...))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, filterLabels)
	}
	return &metrics{
		calls:     counter("peat_filter_calls_total", "Guest gw_process calls."),
		eventsIn:  counter("peat_filter_events_in_total", "Events handed to a filter."),
		eventsOut: counter("peat_filter_events_out_total", "Filter results by verdict (keep, drop, replace, error).", "verdict"),
		traps:     counter("peat_filter_traps_total", "Guest calls that trapped, returned a fatal status or bad output."),
		timeouts:  counter("peat_filter_timeouts_total", "Guest calls stopped for exceeding their time budget."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peat_filter_call_duration_seconds",
			Help:    "Duration of one guest batch call.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 2.5, 12),
		}, filterLabels),
		instances:   gauge("peat_filter_instances", "Live guest instances in the pool."),
		breakerOpen: gauge("peat_filter_breaker_open", "1 while the circuit breaker refuses calls."),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.calls, m.eventsIn, m.eventsOut, m.traps, m.timeouts, m.duration, m.instances, m.breakerOpen}
}

// forPool resolves label values once so the hot path does no map lookups.
func (m *metrics) forPool(tenant, name, digest string) poolMetrics {
	l := []string{tenant, name, digest[:12]}
	pm := poolMetrics{
		calls:       m.calls.WithLabelValues(l...),
		eventsIn:    m.eventsIn.WithLabelValues(l...),
		traps:       m.traps.WithLabelValues(l...),
		timeouts:    m.timeouts.WithLabelValues(l...),
		duration:    m.duration.WithLabelValues(l...),
		instances:   m.instances.WithLabelValues(l...),
		breakerOpen: m.breakerOpen.WithLabelValues(l...),
	}
	for v := Keep; v <= Error; v++ {
		pm.out[v] = m.eventsOut.WithLabelValues(append(l, v.String())...)
	}
	return pm
}
