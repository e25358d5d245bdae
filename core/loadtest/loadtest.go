// Package loadtest drives a gateway over HTTP and reports throughput and
// latency percentiles per endpoint. With no --target it starts an in-process
// gateway on a temporary SQLite directory (or on Postgres with
// --database-url), so `peat-gateway loadtest` measures the real server, the
// load generator sharing the machine.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/gateway"
)

// Options configure one run.
type Options struct {
	Target      string
	Token       string
	Scenario    string
	Duration    time.Duration
	Concurrency int
	Orgs        int
	JSONFile    string
	DatabaseURL string // in-process gateway on Postgres
	Warmup      time.Duration
	// Sink is the cdc scenario's sink kind: nats, webhook, kafka or none.
	Sink string
	// Rate paces the cdc scenario's writes (changes/s over all connections; 0 = flat out).
	Rate float64
	// Filter names a wasm filter (a .wasm path, or a name in filters/dist)
	// bound to every sink of the cdc scenario, with FilterConfig as its config.
	Filter, FilterConfig string
}

// Scenario prepares state and then issues one request per call of Step.
type Scenario interface {
	Setup(ctx context.Context, c *Client) error
	// Step issues one request and returns its endpoint label, status and error.
	Step(c *Client, worker int, n uint64) (endpoint string, status int, err error)
}

var scenarios = map[string]func(o Options) Scenario{
	"read":  func(o Options) Scenario { return &tenantScenario{orgs: o.Orgs, readPct: 100} },
	"write": func(o Options) Scenario { return &tenantScenario{orgs: o.Orgs, readPct: 0} },
	"mixed": func(o Options) Scenario { return &tenantScenario{orgs: o.Orgs, readPct: 80} },
}

// Register adds a scenario (used by features that bring their own).
func Register(name string, f func(o Options) Scenario) { scenarios[name] = f }

// Main is the `peat-gateway loadtest` command.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Target, "target", "", "gateway base URL (default: an in-process gateway on a temp SQLite dir)")
	fs.StringVar(&o.Token, "token", os.Getenv("PEAT_ADMIN_TOKEN"), "admin bearer token (default $PEAT_ADMIN_TOKEN)")
	fs.StringVar(&o.Scenario, "scenario", "mixed", "scenario: "+strings.Join(names(), "|"))
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before the run")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "concurrent connections")
	fs.IntVar(&o.Orgs, "orgs", 10, "organisations to spread load over")
	fs.StringVar(&o.JSONFile, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "in-process gateway on this Postgres instead of SQLite")
	fs.StringVar(&o.Sink, "sink", "", "cdc scenario: sink kind nats|webhook|kafka|none (default $PEAT_LOADTEST_SINK or nats)")
	fs.Float64Var(&o.Rate, "rate", 0, "target requests/s over all connections (0 = as fast as possible)")
	fs.StringVar(&o.Filter, "filter", "", "cdc scenario: wasm filter bound to every sink (a .wasm file or a name in filters/dist)")
	fs.StringVar(&o.FilterConfig, "filter-config", "", "cdc scenario: the filter's JSON config")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole process (load generator and in-process gateway) to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := Run(context.Background(), o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if o.JSONFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.JSONFile, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 1
		}
	}
	if rep.Errors > 0 && rep.Errors*100 > rep.Requests {
		fmt.Fprintf(stderr, "loadtest: more than 1%% of requests failed (%d of %d)\n", rep.Errors, rep.Requests)
		return 1
	}
	return 0
}

func names() []string {
	var n []string
	for k := range scenarios {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Run executes one load test.
func Run(ctx context.Context, o Options, progress io.Writer) (*Report, error) {
	mk, ok := scenarios[o.Scenario]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (have %s)", o.Scenario, strings.Join(names(), ", "))
	}
	if o.Concurrency < 1 || o.Duration <= 0 {
		return nil, errors.New("--concurrency must be ≥ 1 and --duration > 0")
	}
	if o.Orgs < 1 {
		o.Orgs = 1
	}
	target := o.Target
	if target == "" {
		g, addr, cleanup, err := startInProcess(ctx, o)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		_ = g
		target = "http://" + addr
		fmt.Fprintf(progress, "loadtest: in-process gateway (%s) at %s\n", backendName(o), target)
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--target %q is not a URL", target)
	}
	c := NewClient(u.Host, o.Token, o.Concurrency)
	sc := mk(o)
	if err := sc.Setup(ctx, c); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	fmt.Fprintf(progress, "loadtest: scenario %s, %d connections, warm-up %s, measuring %s\n", o.Scenario, o.Concurrency, o.Warmup, o.Duration)
	rate := o.Rate
	if p, ok := sc.(interface{ PacesItself() bool }); ok && p.PacesItself() {
		rate = 0
	}
	before := signRate(300 * time.Millisecond)
	if o.Warmup > 0 {
		drive(sc, c, o.Concurrency, o.Warmup, nil, rate)
	}
	rec := newRecorder(o.Concurrency)
	elapsed := drive(sc, c, o.Concurrency, o.Duration, rec, rate)
	rep := rec.report(o, elapsed)
	if f, ok := sc.(interface{ Finish(*Report) }); ok {
		f.Finish(rep)
	}
	rep.SignsPerSecBefore, rep.SignsPerSecAfter = before, signRate(300*time.Millisecond)
	return rep, nil
}

func backendName(o Options) string {
	if o.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}

func startInProcess(ctx context.Context, o Options) (*gateway.Gateway, string, func(), error) {
	dir, err := os.MkdirTemp("", "peat-loadtest-")
	if err != nil {
		return nil, "", nil, err
	}
	env := map[string]string{"PEAT_GATEWAY_DATA_DIR": dir, "PEAT_GATEWAY_BIND": "127.0.0.1:0", "PEAT_LOG_LEVEL": "warn"}
	if o.Token != "" {
		env["PEAT_ADMIN_TOKEN"] = o.Token
	}
	if o.DatabaseURL != "" {
		env["PEAT_STORAGE_BACKEND"] = "postgres"
		env["PEAT_DATABASE_URL"] = o.DatabaseURL
	}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		if strings.HasPrefix(k, "PEAT_KEK") || strings.HasPrefix(k, "PEAT_CDC_") || strings.HasPrefix(k, "PEAT_WEBHOOK_") {
			return os.LookupEnv(k)
		}
		return "", false
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		return nil, "", nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := gateway.New(ctx, cfg, lookup, gateway.Options{Logger: log})
	if err != nil {
		return nil, "", nil, err
	}
	addr, err := g.Listen("")
	if err != nil {
		return nil, "", nil, err
	}
	go g.Serve()
	return g, addr.String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
		os.RemoveAll(dir)
	}, nil
}

// drive runs workers until d has passed and returns the elapsed time. With
// rate > 0 the workers share one schedule of rate requests per second and a
// request's latency is measured from when it is sent, not from when its
// turn was due (the open-loop pacing the p99-at-a-given-rate figures need).
func drive(sc Scenario, c *Client, workers int, d time.Duration, rec *recorder, rate float64) time.Duration {
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent atomic.Int64
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := uint64(0); !stop.Load(); n++ {
				if rate > 0 {
					due := start.Add(time.Duration(float64(sent.Add(1)) / rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					if stop.Load() {
						return
					}
				}
				t0 := time.Now()
				ep, status, err := sc.Step(c, w, n)
				if rec != nil {
					rec.add(w, ep, status, err, time.Since(t0))
				}
			}
		}(w)
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return time.Since(start)
}

// Client is a small JSON client over fasthttp with keep-alive connections.
type Client struct {
	hc    *fasthttp.HostClient
	token string
}

// NewClient returns a client for host with up to conns connections.
func NewClient(host, token string, conns int) *Client {
	return &Client{token: token, hc: &fasthttp.HostClient{Addr: host, MaxConns: conns + 4,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxIdleConnDuration: time.Minute}}
}

// Do sends one request and returns status and body.
func (c *Client) Do(method, path string, body []byte, hdr map[string]string) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + c.hc.Addr + path)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := c.hc.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// JSON sends v (nil for none) and decodes a 2xx answer into out (may be nil).
func (c *Client) JSON(method, path string, v, out any) (int, error) {
	var body []byte
	if v != nil {
		body, _ = json.Marshal(v)
	}
	st, b, err := c.Do(method, path, body, nil)
	if err != nil {
		return st, err
	}
	if st/100 != 2 {
		return st, fmt.Errorf("%s %s: %d %s", method, path, st, b)
	}
	if out != nil {
		return st, json.Unmarshal(b, out)
	}
	return st, nil
}

// tenantScenario reads orgs and creates formations.
type tenantScenario struct {
	orgs    int
	readPct int
	ids     []string
	run     string
	seq     atomic.Uint64 // unique formation ids across warm-up and run
}

func (s *tenantScenario) Setup(ctx context.Context, c *Client) error {
	s.run = fmt.Sprintf("%x", rand.Uint32())
	for i := 0; i < s.orgs; i++ {
		id := fmt.Sprintf("lt-%s-%d", s.run, i)
		if _, err := c.JSON("POST", "/orgs", map[string]string{"org_id": id, "display_name": "load test " + id}, nil); err != nil {
			return err
		}
		q := map[string]any{"quotas": map[string]uint32{"max_formations": 1 << 30, "max_peers_per_formation": 1 << 30,
			"max_documents_per_formation": 1 << 30, "max_cdc_sinks": 100, "max_enrollments_per_hour": 1 << 30}}
		if _, err := c.JSON("PATCH", "/orgs/"+id, q, nil); err != nil {
			return err
		}
		s.ids = append(s.ids, id)
	}
	return nil
}

func (s *tenantScenario) Step(c *Client, w int, n uint64) (string, int, error) {
	org := s.ids[int(n+uint64(w))%len(s.ids)]
	if s.readPct > 0 && (s.readPct == 100 || rand.IntN(100) < s.readPct) {
		st, _, err := c.Do("GET", "/orgs/"+org, nil, nil)
		return "GET /orgs/{org}", st, err
	}
	body := fmt.Appendf(nil, `{"app_id":"f-%s-%d","enrollment_policy":"Open"}`, s.run, s.seq.Add(1))
	st, _, err := c.Do("POST", "/orgs/"+org+"/formations", body, nil)
	return "POST /orgs/{org}/formations", st, err
}
