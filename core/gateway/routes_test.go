package gateway_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryAdminRouteRequiresAuth walks the fully assembled gateway's route
// table, so a route added by any module cannot slip out from behind admin
// auth unnoticed, and a public route never asks for the admin token.
func TestEveryAdminRouteRequiresAuth(t *testing.T) {
	e := env{"PEAT_GATEWAY_DATA_DIR": t.TempDir(), "PEAT_GATEWAY_BIND": "127.0.0.1:0", "PEAT_ADMIN_TOKEN": "t0ken"}
	g := open(t, e)
	addr, err := g.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve()
	defer g.Shutdown(context.Background())
	base := "http://" + addr.String()
	admin, public := 0, 0
	for _, rt := range g.Server.RouteTable() {
		path := rt.Template
		for strings.Contains(path, "{") {
			i, j := strings.Index(path, "{"), strings.Index(path, "}")
			path = path[:i] + "x" + path[j+1:]
		}
		req, _ := http.NewRequest(rt.Method, base+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		switch {
		case rt.Admin && res.StatusCode != 401:
			t.Errorf("%s %s without a token: %d, want 401", rt.Method, rt.Template, res.StatusCode)
		case !rt.Admin && res.StatusCode == 401:
			t.Errorf("public route %s %s asked for the admin token", rt.Method, rt.Template)
		}
		if rt.Admin {
			admin++
		} else {
			public++
		}
	}
	if admin < 35 || public < 4 {
		t.Fatalf("walked %d admin and %d public routes; modules are missing", admin, public)
	}
	t.Logf("%d admin and %d public routes checked", admin, public)
}

// TestUIDir serves the admin UI from PEAT_UI_DIR, SPA fallback included.
func TestUIDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>from disk</title>"), 0o644)
	g := open(t, env{"PEAT_GATEWAY_DATA_DIR": t.TempDir(), "PEAT_GATEWAY_BIND": "127.0.0.1:0", "PEAT_UI_DIR": dir})
	addr, err := g.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve()
	defer g.Shutdown(context.Background())
	for _, p := range []string{"/_/", "/_/orgs/acme"} {
		res, err := http.Get("http://" + addr.String() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), "from disk") {
			t.Fatalf("%s: %d %s", p, res.StatusCode, b)
		}
	}
}
