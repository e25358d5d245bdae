package api

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// httpMetrics records request counts and latency by route template, so label
// cardinality stays bounded whatever ids clients send.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// cache avoids a label-hash lookup per request on hot routes.
	cache sync.Map // key string -> *cached
}

type cached struct {
	count prometheus.Counter
	lat   prometheus.Observer
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peat_gw_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "peat_gw_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

func (m *httpMetrics) observe(route string, method []byte, status int, d time.Duration) {
	switch string(method) {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = []byte("OTHER")
	}
	key := route + " " + string(method) + " " + strconv.Itoa(status)
	v, ok := m.cache.Load(key)
	if !ok {
		ms := string(method)
		v, _ = m.cache.LoadOrStore(key, &cached{
			count: m.requests.WithLabelValues(route, ms, strconv.Itoa(status)),
			lat:   m.latency.WithLabelValues(route, ms),
		})
	}
	c := v.(*cached)
	c.count.Inc()
	c.lat.Observe(d.Seconds())
}

// metricsHandler renders the registry in the Prometheus text format.
func (s *Server) metricsHandler() func(*fasthttp.RequestCtx, []string) {
	h := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	return func(c *fasthttp.RequestCtx, _ []string) { h(c) }
}
