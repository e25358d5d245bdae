package cdc

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's Prometheus series, labelled per sink.
type metrics struct {
	delivered   *prometheus.CounterVec
	failed      *prometheus.CounterVec
	dead        *prometheus.CounterVec
	filtered    *prometheus.CounterVec
	pending     *prometheus.GaugeVec
	owned       *prometheus.GaugeVec
	latency     *prometheus.HistogramVec
	outboxDepth prometheus.Gauge
}

var sinkLabels = []string{"org", "sink_id", "kind"}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peat_gw_cdc_delivered_total", Help: "Events acknowledged by a sink.",
		}, sinkLabels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peat_gw_cdc_delivery_failures_total", Help: "Failed delivery attempts (each retry counts).",
		}, sinkLabels),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peat_gw_cdc_dead_lettered_total", Help: "Events moved to a sink's dead letters.",
		}, sinkLabels),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peat_gw_cdc_filtered_total", Help: "Events dropped by a filter chain.",
		}, sinkLabels),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "peat_gw_cdc_pending_events", Help: "Outbox events after the sink's cursor (refreshed periodically).",
		}, sinkLabels),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "peat_gw_cdc_sink_active", Help: "1 while this replica delivers the sink.",
		}, sinkLabels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peat_gw_cdc_delivery_latency_seconds",
			Help:    "Time from a change's commit timestamp to its acknowledgement by the sink.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}, sinkLabels),
		outboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peat_gw_cdc_outbox_depth", Help: "Retained outbox rows, all orgs.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.delivered, m.failed, m.dead, m.filtered, m.pending, m.owned, m.latency, m.outboxDepth)
	}
	return m
}

// sinkMetrics are one sink's resolved series, so the hot path skips the
// label hashing.
type sinkMetrics struct {
	delivered, failed, dead, filtered prometheus.Counter
	pending, owned                    prometheus.Gauge
	latency                           prometheus.Observer
}

func (m *metrics) forSink(org, sink, kind string) sinkMetrics {
	l := prometheus.Labels{"org": org, "sink_id": sink, "kind": kind}
	return sinkMetrics{
		delivered: m.delivered.With(l),
		failed:    m.failed.With(l),
		dead:      m.dead.With(l),
		filtered:  m.filtered.With(l),
		pending:   m.pending.With(l),
		owned:     m.owned.With(l),
		latency:   m.latency.With(l),
	}
}

// drop removes a deleted sink's series so label cardinality does not grow
// with sink churn.
func (m *metrics) drop(org, sink, kind string) {
	l := prometheus.Labels{"org": org, "sink_id": sink, "kind": kind}
	m.delivered.Delete(l)
	m.failed.Delete(l)
	m.dead.Delete(l)
	m.filtered.Delete(l)
	m.pending.Delete(l)
	m.owned.Delete(l)
	m.latency.Delete(l)
}
