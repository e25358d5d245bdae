package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/store/backendtest"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// eachBackend runs f on a fresh SQLite and a fresh Postgres store.
func eachBackend(t *testing.T, f func(t *testing.T, st store.Store)) { backendtest.Each(t, f) }

// gw is a running server and an HTTP client for it.
type gw struct {
	t     *testing.T
	base  string
	token string
	st    store.Store
	srv   *api.Server
}

func start(t *testing.T, st store.Store, token *string, mods ...api.Module) *gw {
	t.Helper()
	ten := tenant.New(st, nil, tenant.Options{})
	srv := api.New(api.Config{AdminToken: token, Version: "test", Tenant: ten, Modules: mods,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	g := &gw{t: t, base: "http://" + ln.Addr().String(), st: st, srv: srv}
	if token != nil {
		g.token = *token
	}
	return g
}

// resp is a decoded answer.
type resp struct {
	status int
	hdr    http.Header
	body   []byte
}

func (r resp) errMsg() string {
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil || e.Error == nil {
		return ""
	}
	return *e.Error
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; body may be a string (sent raw as JSON) or a value (marshalled).
func (g *gw) do(method, path string, body any, hdr ...string) resp {
	g.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case []byte:
		rd, ct = bytes.NewReader(b), "application/json"
	default:
		j, _ := json.Marshal(b)
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, g.base+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, hdr: res.Header, body: b}
}

// must asserts a status (and for errors a JSON body containing want).
func (g *gw) must(r resp, status int, want string) resp {
	g.t.Helper()
	if r.status != status {
		g.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if status >= 400 {
		if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			g.t.Fatalf("error Content-Type %q, want application/json", ct)
		}
		if msg := r.errMsg(); !strings.Contains(msg, want) {
			g.t.Fatalf("error %q does not contain %q", msg, want)
		}
	}
	return r
}
