package loadtest

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// recorder keeps per-worker samples so workers never contend on a lock.
type recorder struct {
	per []map[string]*series
}

type series struct {
	lat    []time.Duration
	errors int
	status map[int]int
}

func newRecorder(workers int) *recorder {
	r := &recorder{per: make([]map[string]*series, workers)}
	for i := range r.per {
		r.per[i] = map[string]*series{}
	}
	return r
}

func (r *recorder) add(w int, ep string, status int, err error, d time.Duration) {
	s := r.per[w][ep]
	if s == nil {
		s = &series{status: map[int]int{}}
		r.per[w][ep] = s
	}
	s.lat = append(s.lat, d)
	if err != nil || status/100 != 2 {
		s.errors++
	}
	s.status[status]++
}

// Report is a run's result.
type Report struct {
	Scenario    string      `json:"scenario"`
	Concurrency int         `json:"concurrency"`
	DurationSec float64     `json:"duration_sec"`
	Requests    int         `json:"requests"`
	Errors      int         `json:"errors"`
	Throughput  float64     `json:"throughput_rps"`
	Endpoints   []Endpoint  `json:"endpoints"`
	Extra       []ExtraLine `json:"extra,omitempty"`
	// SignsPerSecBefore/After are the machine's crypto/ed25519 signing rate
	// on one core just before and after the run (see signRate).
	SignsPerSecBefore float64 `json:"machine_ed25519_signs_per_sec_before"`
	SignsPerSecAfter  float64 `json:"machine_ed25519_signs_per_sec_after"`
}

// Endpoint is one endpoint's figures.
type Endpoint struct {
	Name       string      `json:"name"`
	Requests   int         `json:"requests"`
	Errors     int         `json:"errors"`
	Throughput float64     `json:"throughput_rps"`
	P50ms      float64     `json:"p50_ms"`
	P95ms      float64     `json:"p95_ms"`
	P99ms      float64     `json:"p99_ms"`
	Maxms      float64     `json:"max_ms"`
	Status     map[int]int `json:"status"`
}

// ExtraLine carries scenario-specific figures (delivery latency, for example).
type ExtraLine struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

var mergeMu sync.Mutex

func (r *recorder) report(o Options, elapsed time.Duration) *Report {
	mergeMu.Lock()
	defer mergeMu.Unlock()
	all := map[string]*series{}
	for _, m := range r.per {
		for ep, s := range m {
			a := all[ep]
			if a == nil {
				a = &series{status: map[int]int{}}
				all[ep] = a
			}
			a.lat = append(a.lat, s.lat...)
			a.errors += s.errors
			for k, v := range s.status {
				a.status[k] += v
			}
		}
	}
	rep := &Report{Scenario: o.Scenario, Concurrency: o.Concurrency, DurationSec: elapsed.Seconds()}
	for ep, s := range all {
		sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })
		e := Endpoint{Name: ep, Requests: len(s.lat), Errors: s.errors, Status: s.status,
			Throughput: float64(len(s.lat)) / elapsed.Seconds(),
			P50ms:      pct(s.lat, 50), P95ms: pct(s.lat, 95), P99ms: pct(s.lat, 99), Maxms: ms(s.lat[len(s.lat)-1])}
		rep.Endpoints = append(rep.Endpoints, e)
		rep.Requests += e.Requests
		rep.Errors += e.Errors
	}
	sort.Slice(rep.Endpoints, func(i, j int) bool { return rep.Endpoints[i].Name < rep.Endpoints[j].Name })
	rep.Throughput = float64(rep.Requests) / elapsed.Seconds()
	return rep
}

// Percentile returns the p-th percentile of sorted durations in ms.
func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return ms(sorted[i])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Print writes the human-readable table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "scenario %s: %d requests in %.1fs with %d connections: %.0f req/s, %d errors\n",
		r.Scenario, r.Requests, r.DurationSec, r.Concurrency, r.Throughput, r.Errors)
	fmt.Fprintf(w, "%-44s %9s %10s %8s %8s %8s %8s %7s\n", "endpoint", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors")
	for _, e := range r.Endpoints {
		fmt.Fprintf(w, "%-44s %9d %10.0f %8.2f %8.2f %8.2f %8.2f %7d\n", e.Name, e.Requests, e.Throughput, e.P50ms, e.P95ms, e.P99ms, e.Maxms, e.Errors)
		if e.Errors > 0 {
			fmt.Fprintf(w, "    status counts: %v\n", e.Status)
		}
	}
	for _, x := range r.Extra {
		fmt.Fprintf(w, "%-44s %12.2f %s\n", x.Name, x.Value, x.Unit)
	}
	if r.SignsPerSecBefore > 0 {
		fmt.Fprintf(w, "machine speed: one core made %.0f crypto/ed25519 signatures/s before the run, %.0f after\n",
			r.SignsPerSecBefore, r.SignsPerSecAfter)
	}
}
