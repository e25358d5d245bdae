package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	Register("cdc", func(o Options) Scenario { return newCDCScenario(o) })
}

// cdcScenario drives document PUTs into one formation per org and observes
// their delivery through a sink of the chosen kind, so it measures the whole
// path: accept (durable group commit), dispatch, sink acknowledgement.
//
// The sink kind and an optional pacing rate come from
// PEAT_LOADTEST_SINK (nats|webhook|kafka|none, default nats) and
// PEAT_LOADTEST_RATE (changes/s over all connections, 0 = as fast as
// possible). Delivery is observed where the sink writes:
//
//   - nats: a core subscription on PEAT_CDC_NATS_URL (the URL the gateway
//     uses); JetStream publishes are seen by plain subscribers too. The
//     broker is external (e.g. `nats-server -js`): nats-server is not linked
//     into the gateway binary, which would grow it by ~15 MB for a test aid.
//   - webhook: an HTTP receiver in this process (PEAT_LOADTEST_WEBHOOK_ADDR,
//     default 127.0.0.1:0); the gateway needs PEAT_WEBHOOK_ALLOW_PRIVATE=true.
//   - kafka: a consumer on PEAT_CDC_KAFKA_BROKERS, topic created per run.
//
// Every document body carries its send time, so PUT-to-delivered latency is
// measured per event (clock of this process on both ends).
type cdcScenario struct {
	o    Options
	sink string
	rate float64
	run  string
	pad  string

	paths []string // per org: /orgs/{org}/formations/fleet/documents/

	// pacing
	pace      atomic.Int64
	paceStart time.Time
	paceOnce  sync.Once

	// phases: warm-up (when set) then the measured run
	phaseMu      sync.Mutex
	measureStart time.Time
	measureEnd   time.Time
	phase        int

	accepted   atomic.Int64 // changed PUTs in the measured run
	changedAll atomic.Int64 // changed PUTs, warm-up included

	obs *observer

	// putLat holds, per worker, the PUT latencies of the measured run
	// taken after the pacing wait (the report's own figures include it).
	putLat [][]time.Duration
}

func newCDCScenario(o Options) *cdcScenario {
	sink := o.Sink
	if sink == "" {
		sink = os.Getenv("PEAT_LOADTEST_SINK")
	}
	s := &cdcScenario{o: o, sink: strings.ToLower(strings.TrimSpace(sink)), rate: o.Rate}
	if s.sink == "" {
		s.sink = "nats"
	}
	if v := os.Getenv("PEAT_LOADTEST_RATE"); v != "" && s.rate == 0 {
		s.rate, _ = strconv.ParseFloat(v, 64)
	}
	s.pad = strings.Repeat("x", 160) // a document of ~250 bytes
	s.putLat = make([][]time.Duration, max(o.Concurrency, 1))
	return s
}

// observer collects deliveries: their receive time and latency.
type observer struct {
	mu   sync.Mutex
	recv []int64 // unix ns of receipt
	lat  []int64 // ns from send to receipt
	seen atomic.Int64
	stop func()
}

func (ob *observer) add(payload []byte) {
	now := time.Now().UnixNano()
	t := sentAt(payload)
	if t == 0 {
		return
	}
	ob.seen.Add(1)
	ob.mu.Lock()
	ob.recv = append(ob.recv, now)
	ob.lat = append(ob.lat, now-t)
	ob.mu.Unlock()
}

// sentAt returns the send time ("t") a delivered event's patches carry, 0
// when there is none. The observer shares the gateway's CPU, so it reads
// the one number it needs instead of decoding the whole event: patches
// is the document's compact field map, the scenario's bodies hold no
// string that contains `"t":`, and a key inside patches comes after the
// "patches" key.
func sentAt(payload []byte) int64 {
	i := bytes.Index(payload, []byte(`"patches":{`))
	if i < 0 {
		return 0
	}
	rest := payload[i:]
	j := bytes.Index(rest, []byte(`"t":`))
	if j < 0 {
		return 0
	}
	rest = rest[j+len(`"t":`):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	t, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	if err != nil {
		return 0
	}
	return t
}

func (s *cdcScenario) Setup(ctx context.Context, c *Client) error {
	switch s.sink {
	case "nats", "webhook", "kafka", "none":
	default:
		return fmt.Errorf("PEAT_LOADTEST_SINK %q: want nats, webhook, kafka or none", s.sink)
	}
	s.run = fmt.Sprintf("%x", mrand.Uint32())
	s.obs = &observer{stop: func() {}}
	sinkType, err := s.startObserver(ctx)
	if err != nil {
		return err
	}
	var filterWasm []byte
	var filterName string
	var filterRefs []any
	if s.o.Filter != "" {
		path := s.o.Filter
		if !strings.HasSuffix(path, ".wasm") {
			path = "filters/dist/" + path + ".wasm"
		}
		if filterWasm, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("--filter: %w (run `make filters` for the examples)", err)
		}
		filterName = strings.TrimSuffix(filepath.Base(path), ".wasm")
		ref := map[string]any{"name": filterName}
		if s.o.FilterConfig != "" {
			ref["config"] = json.RawMessage(s.o.FilterConfig)
		}
		filterRefs = []any{ref}
	}
	for i := 0; i < s.o.Orgs; i++ {
		org := fmt.Sprintf("lc-%s-%d", s.run, i)
		if _, err := c.JSON("POST", "/orgs", map[string]string{"org_id": org, "display_name": "cdc load " + org}, nil); err != nil {
			return err
		}
		q := map[string]any{"quotas": map[string]uint32{"max_formations": 10, "max_peers_per_formation": 10,
			"max_documents_per_formation": 1 << 30, "max_cdc_sinks": 10, "max_enrollments_per_hour": 10}}
		if _, err := c.JSON("PATCH", "/orgs/"+org, q, nil); err != nil {
			return err
		}
		if _, err := c.JSON("POST", "/orgs/"+org+"/formations", map[string]string{"app_id": "fleet"}, nil); err != nil {
			return err
		}
		if filterWasm != nil {
			st, b, err := c.Do("PUT", "/orgs/"+org+"/filters/"+filterName, filterWasm, map[string]string{"Content-Type": "application/wasm"})
			if err != nil || st/100 != 2 {
				return fmt.Errorf("upload filter %s: %d %s %v", filterName, st, b, err)
			}
		}
		if sinkType != nil {
			body := map[string]any{"sink_type": sinkType(org)}
			if filterRefs != nil {
				body["filters"] = filterRefs
			}
			if _, err := c.JSON("POST", "/orgs/"+org+"/sinks", body, nil); err != nil {
				return err
			}
		}
		s.paths = append(s.paths, "/orgs/"+org+"/formations/fleet/documents/")
	}
	return nil
}

// startObserver starts watching the sink kind's target and returns the
// sink_type to create per org (nil for none).
func (s *cdcScenario) startObserver(ctx context.Context) (func(org string) any, error) {
	switch s.sink {
	case "nats":
		url := os.Getenv("PEAT_CDC_NATS_URL")
		if url == "" {
			return nil, errors.New("--scenario cdc with the nats sink needs PEAT_CDC_NATS_URL (for example a local `nats-server -js`), for the gateway and for this observer")
		}
		nc, err := nats.Connect(url)
		if err != nil {
			return nil, err
		}
		s.obs.stop = nc.Close
		return func(org string) any {
			// Subscribed before the sink exists, so nothing is missed.
			if sub, err := nc.Subscribe(org+".lt.>", func(m *nats.Msg) { s.obs.add(m.Data) }); err == nil {
				_ = sub.SetPendingLimits(-1, -1)
				_ = nc.Flush()
			}
			return map[string]any{"Nats": map[string]string{"subject_prefix": "lt"}}
		}, nil
	case "webhook":
		addr := os.Getenv("PEAT_LOADTEST_WEBHOOK_ADDR")
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b := make([]byte, 0, 1024)
			buf := make([]byte, 4096)
			for {
				n, err := r.Body.Read(buf)
				b = append(b, buf[:n]...)
				if err != nil {
					break
				}
			}
			s.obs.add(b)
		})}
		go srv.Serve(ln)
		s.obs.stop = func() { srv.Close() }
		url := "http://" + ln.Addr().String() + "/hook"
		return func(string) any { return map[string]any{"Webhook": map[string]string{"url": url}} }, nil
	case "kafka":
		var brokers []string
		for _, b := range strings.Split(os.Getenv("PEAT_CDC_KAFKA_BROKERS"), ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		if len(brokers) == 0 {
			return nil, errors.New("--scenario cdc with the kafka sink needs PEAT_CDC_KAFKA_BROKERS")
		}
		topic := "peat-loadtest-" + s.run
		admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return nil, err
		}
		req := kmsg.NewPtrCreateTopicsRequest()
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic, t.NumPartitions, t.ReplicationFactor = topic, 8, -1
		req.Topics = append(req.Topics, t)
		_, err = req.RequestWith(ctx, admin)
		admin.Close()
		if err != nil {
			return nil, fmt.Errorf("create topic %s: %w", topic, err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic))
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for cctx.Err() == nil {
				cl.PollFetches(cctx).EachRecord(func(r *kgo.Record) { s.obs.add(r.Value) })
			}
		}()
		s.obs.stop = func() { cancel(); <-done; cl.Close() }
		return func(string) any { return map[string]any{"Kafka": map[string]string{"topic": topic}} }, nil
	}
	return nil, nil
}

// PacesItself tells the driver this scenario applies --rate itself (it
// reports accept latency with and without the pacing wait).
func (s *cdcScenario) PacesItself() bool { return true }

// wait paces requests to the configured rate (a shared schedule, so the
// total over all connections is the rate).
func (s *cdcScenario) wait() {
	if s.rate <= 0 {
		return
	}
	s.paceOnce.Do(func() { s.paceStart = time.Now() })
	k := s.pace.Add(1)
	due := s.paceStart.Add(time.Duration(float64(k) / s.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

func (s *cdcScenario) Step(c *Client, w int, n uint64) (string, int, error) {
	if w == 0 && n == 0 {
		s.phaseMu.Lock()
		s.phase++
		if s.phase == 2 || s.o.Warmup <= 0 {
			s.measureStart = time.Now()
		}
		s.phaseMu.Unlock()
	}
	s.wait()
	org := int(n+uint64(w)) % len(s.paths)
	doc := "d" + strconv.Itoa(w) + "-" + strconv.FormatUint(n%64, 10)
	body := make([]byte, 0, 256)
	body = append(body, `{"t":`...)
	body = strconv.AppendInt(body, time.Now().UnixNano(), 10)
	body = append(body, `,"w":`...)
	body = strconv.AppendInt(body, int64(w), 10)
	body = append(body, `,"n":`...)
	body = strconv.AppendUint(body, n, 10)
	body = append(body, `,"pad":"`...)
	body = append(body, s.pad...)
	body = append(body, `"}`...)
	t0 := time.Now()
	st, b, err := c.Do("PUT", s.paths[org]+doc, body, nil)
	if s.rate > 0 && s.measuring() && w < len(s.putLat) {
		s.putLat[w] = append(s.putLat[w], time.Since(t0))
	}
	if err == nil && st == 200 {
		if strings.Contains(string(b), `"changed":true`) {
			s.changedAll.Add(1)
			if s.measuring() {
				s.accepted.Add(1)
			}
		}
	} else if err == nil {
		err = fmt.Errorf("PUT: %d %s", st, b)
	}
	return "PUT document", st, err
}

func (s *cdcScenario) measuring() bool {
	s.phaseMu.Lock()
	defer s.phaseMu.Unlock()
	return !s.measureStart.IsZero()
}

// Finish waits for the delivery backlog to drain (up to 60 s) and adds the
// delivery figures to the report.
func (s *cdcScenario) Finish(r *Report) {
	s.phaseMu.Lock()
	start := s.measureStart
	s.phaseMu.Unlock()
	end := time.Now()
	defer s.obs.stop()
	r.Extra = append(r.Extra, ExtraLine{Name: "accepted (changed) during run", Value: float64(s.accepted.Load()) / end.Sub(start).Seconds(), Unit: "changes/s"})
	if s.rate > 0 {
		var all []time.Duration
		for _, l := range s.putLat {
			all = append(all, l...)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		r.Extra = append(r.Extra,
			ExtraLine{Name: "PUT accept p50 (without pacing wait)", Value: pct(all, 50), Unit: "ms"},
			ExtraLine{Name: "PUT accept p99 (without pacing wait)", Value: pct(all, 99), Unit: "ms"})
	}
	if s.sink == "none" {
		return
	}
	// Everything sent (warm-up included) must arrive: drain.
	deadline := time.Now().Add(60 * time.Second)
	for s.obs.seen.Load() < s.changedAll.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Now()
	s.obs.mu.Lock()
	recv := append([]int64(nil), s.obs.recv...)
	lat := append([]int64(nil), s.obs.lat...)
	s.obs.mu.Unlock()
	var inRun int
	var runLat []int64
	for i, t := range recv {
		if t >= start.UnixNano() && t <= end.UnixNano() {
			inRun++
		}
		// Latency of events sent during the measured run.
		if sentAt := t - lat[i]; sentAt >= start.UnixNano() && sentAt <= end.UnixNano() {
			runLat = append(runLat, lat[i])
		}
	}
	sort.Slice(runLat, func(i, j int) bool { return runLat[i] < runLat[j] })
	q := func(p float64) float64 {
		if len(runLat) == 0 {
			return 0
		}
		return float64(runLat[min(len(runLat)-1, int(p*float64(len(runLat))))]) / 1e6
	}
	r.Extra = append(r.Extra,
		ExtraLine{Name: "delivered during run (" + s.sink + ")", Value: float64(inRun) / end.Sub(start).Seconds(), Unit: "changes/s"},
		ExtraLine{Name: "delivered total incl. drain", Value: float64(len(recv)), Unit: "events"},
		ExtraLine{Name: "drain after run", Value: float64(drained.Sub(end).Milliseconds()), Unit: "ms"},
		ExtraLine{Name: "PUT-to-delivered p50", Value: q(0.50), Unit: "ms"},
		ExtraLine{Name: "PUT-to-delivered p95", Value: q(0.95), Unit: "ms"},
		ExtraLine{Name: "PUT-to-delivered p99", Value: q(0.99), Unit: "ms"},
		ExtraLine{Name: "PUT-to-delivered max", Value: q(1), Unit: "ms"},
	)
}
