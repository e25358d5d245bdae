package gateway_test

import (
	"context"
	"net/http"
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
