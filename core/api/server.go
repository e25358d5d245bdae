// Package api serves the gateway's HTTP surface on fasthttp: the reference's
// admin API (same routes, shapes and status codes), the new document, filter
// and delivery routes, enrollment, health, readiness and metrics. Handlers
// decode and validate the request shape, call the domain packages and encode
// the result; all business rules live in the domain.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// MaxJSONBody is the reference's request body limit (axum's default).
const MaxJSONBody = 2 << 20

// Checker reports whether a dependency is ready.
type Checker interface {
	Name() string
	Check(ctx context.Context) error
}

// Config assembles a Server.
type Config struct {
	// AdminToken, when non-nil, is required as a bearer on admin routes
	// (set even to "" enforces auth, as in the reference).
	AdminToken *string
	Version    string
	Tenant     *tenant.Service
	// Extra route sets (enrollment, documents, filters, delivery) register here.
	Modules []Module
	// UI serves the admin UI under /_/ when non-nil.
	UI fasthttp.RequestHandler
	// MaxBody bounds any request body (module uploads are larger than JSON bodies).
	MaxBody  int
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Checks   []Checker
	// AllowHTTPIssuers accepts http:// OIDC issuers (development only).
	AllowHTTPIssuers bool
}

// Module adds routes to the server.
type Module interface {
	Routes(r *Routes)
}

// Server is the HTTP front of the gateway.
type Server struct {
	cfg     Config
	rt      *router
	srv     *fasthttp.Server
	metrics *httpMetrics
	log     *slog.Logger
	token   [32]byte
	pool    sync.Pool
	ready   func(ctx context.Context) error
}

// New builds a Server and registers every route.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.MaxBody < MaxJSONBody {
		cfg.MaxBody = MaxJSONBody
	}
	s := &Server{cfg: cfg, rt: newRouter(), log: cfg.Logger, metrics: newHTTPMetrics(cfg.Registry)}
	if cfg.AdminToken != nil {
		s.token = sha256.Sum256([]byte(*cfg.AdminToken))
	}
	s.pool.New = func() any { p := make(params, 0, 4); return &p }
	r := &Routes{s: s}
	s.registerCore(r)
	for _, m := range cfg.Modules {
		m.Routes(r)
	}
	s.srv = &fasthttp.Server{
		Handler:               s.serve,
		Name:                  "peat-gateway",
		MaxRequestBodySize:    cfg.MaxBody,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ErrorHandler:          s.transportError,
		Logger:                slogPrinter{cfg.Logger},
	}
	return s
}

// Routes registers handlers on the server's router.
type Routes struct{ s *Server }

// Admin registers a route behind admin auth.
func (r *Routes) Admin(method, template string, h func(c *fasthttp.RequestCtx, p []string)) {
	r.s.rt.handle(method, template, true, func(c *fasthttp.RequestCtx, p params) { h(c, p) })
}

// Public registers a route with no admin auth.
func (r *Routes) Public(method, template string, h func(c *fasthttp.RequestCtx, p []string)) {
	r.s.rt.handle(method, template, false, func(c *fasthttp.RequestCtx, p params) { h(c, p) })
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Handler exposes the request handler (tests and the in-process load test).
func (s *Server) Handler() fasthttp.RequestHandler { return s.serve }

// Shutdown stops accepting, waits for in-flight requests, and returns when
// they are done or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

func (s *Server) serve(c *fasthttp.RequestCtx) {
	start := time.Now()
	pp := s.pool.Get().(*params)
	tmpl := s.dispatch(c, pp)
	s.pool.Put(pp)
	s.metrics.observe(tmpl, c.Method(), c.Response.StatusCode(), time.Since(start))
}

// dispatch routes one request and returns the route template for metrics.
func (s *Server) dispatch(c *fasthttp.RequestCtx, pp *params) string {
	raw := c.URI().PathOriginal()
	if q := indexByte(raw, '?'); q >= 0 {
		raw = raw[:q]
	}
	if s.cfg.UI != nil && len(raw) >= 2 && raw[0] == '/' && raw[1] == '_' && (len(raw) == 2 || raw[2] == '/') {
		s.cfg.UI(c)
		return "/_/*"
	}
	rt, ok := s.rt.match(raw, pp)
	if !ok {
		writeError(c, fasthttp.StatusNotFound, "no route for "+string(c.Method())+" "+string(raw))
		return "unmatched"
	}
	if rt.admin && !s.authorized(c) {
		return rt.template
	}
	m := string(c.Method())
	h := rt.methods[m]
	if h == nil && m == "HEAD" {
		h = rt.methods["GET"]
	}
	if h == nil {
		c.Response.Header.Set("Allow", rt.allow())
		writeError(c, fasthttp.StatusMethodNotAllowed, "method "+m+" not allowed on "+rt.template)
		return rt.template
	}
	h(c, *pp)
	return rt.template
}

func indexByte(b []byte, x byte) int {
	for i, c := range b {
		if c == x {
			return i
		}
	}
	return -1
}

// authorized applies the reference's bearer rules (anchor-api.md §1.3) and
// writes the 401/403 itself. Comparing SHA-256 digests keeps the comparison
// constant-time in the token's length too.
func (s *Server) authorized(c *fasthttp.RequestCtx) bool {
	if s.cfg.AdminToken == nil {
		return true
	}
	h := c.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if string(h) == "Bearer" {
		// "Bearer " with nothing after it reaches us trimmed by the transport:
		// the prefix was sent, the token is empty.
		h = []byte(prefix)
	}
	if len(h) < len(prefix) || string(h[:len(prefix)]) != prefix || !visibleASCII(h) {
		writeError(c, fasthttp.StatusUnauthorized, "Admin token required")
		return false
	}
	got := sha256.Sum256(h[len(prefix):])
	if subtle.ConstantTimeCompare(got[:], s.token[:]) != 1 {
		writeError(c, fasthttp.StatusForbidden, "Invalid admin token")
		return false
	}
	return true
}

func visibleASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// transportError answers requests fasthttp rejects before routing.
func (s *Server) transportError(c *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(c, fasthttp.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
	default:
		writeError(c, fasthttp.StatusBadRequest, "malformed request: "+err.Error())
	}
	c.SetConnectionClose()
}

// ---- response helpers ----

var jsonCT = []byte("application/json")

// writeJSON encodes v with the given status.
func writeJSON(c *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(c, fasthttp.StatusInternalServerError, "failed to encode response")
		return
	}
	c.SetStatusCode(status)
	c.Response.Header.SetContentTypeBytes(jsonCT)
	c.SetBody(b)
}

// writeError writes the contract's JSON error body.
func writeError(c *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	c.SetStatusCode(status)
	c.Response.Header.SetContentTypeBytes(jsonCT)
	c.SetBody(b)
}

// writeEmpty answers a DELETE: 200 with an empty body, as the reference.
func writeEmpty(c *fasthttp.RequestCtx) {
	c.SetStatusCode(fasthttp.StatusOK)
	c.ResetBody()
}

var kindStatus = map[errs.Kind]int{
	errs.Internal:      500,
	errs.Invalid:       400,
	errs.NotFound:      404,
	errs.Quota:         429,
	errs.RateLimited:   429,
	errs.Conflict:      409,
	errs.Unauthorized:  401,
	errs.Forbidden:     403,
	errs.Unprocessable: 422,
	errs.StorageFull:   507,
	errs.Unavailable:   503,
}

// fail writes a domain error; internal causes are logged, never shown.
func (s *Server) fail(c *fasthttp.RequestCtx, err error) {
	var e *errs.Error
	if !errors.As(err, &e) {
		e = errs.Wrap(errs.Internal, err, "internal error")
	}
	st := kindStatus[e.Kind]
	if st >= 500 {
		s.log.Error("request failed", "method", string(c.Method()), "path", string(c.Path()), "error", e.Msg, "cause", e.Err)
	}
	writeError(c, st, e.Msg)
}

// failAs writes a domain error with a fixed status (routes where the
// reference maps every failure to one code).
func (s *Server) failAs(c *fasthttp.RequestCtx, status int, err error) {
	var e *errs.Error
	if errors.As(err, &e) && e.Kind == errs.Internal {
		s.fail(c, err)
		return
	}
	writeError(c, status, err.Error())
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.l.Debug("fasthttp", "msg", strconv.Quote(format), "args", args)
}

// ctxOf returns the context for a request's domain calls. fasthttp's
// RequestCtx is itself a context, but one that is cancelled the moment the
// server starts shutting down, which would fail in-flight requests that
// graceful shutdown is meant to let finish; so handlers use a detached one.
func ctxOf(_ *fasthttp.RequestCtx) context.Context { return context.Background() }

// Context is ctxOf for route modules in other files.
func Context(c *fasthttp.RequestCtx) context.Context { return ctxOf(c) }
