package ui

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/valyala/fasthttp"
)

const testIndex = `<!doctype html><html><head><script type="module" src="/_/assets/index-Ab12Cd34.js"></script></head><body><div id="app"></div></body></html>`

func builtFS() fstest.MapFS {
	return fstest.MapFS{
		".gitkeep":                   {Data: nil},
		"index.html":                 {Data: []byte(testIndex)},
		"assets/index-Ab12Cd34.js":   {Data: []byte("console.log('hi')")},
		"assets/index-Ef56Gh78.css":  {Data: []byte("body{}")},
		"logo.svg":                   {Data: []byte("<svg/>")},
		"assets/nested/font-1234.w2": {Data: []byte{0, 1, 2}},
	}
}

// serve runs the handler on a real fasthttp server bound to a loopback port
// and returns its base URL; the server stops with the test.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// client never follows redirects so the redirect itself can be asserted.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

type result struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{res.StatusCode, res.Header, string(b)}
}

func jsonError(t *testing.T, r result) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {\"error\": ...}: %v", r.body, err)
	}
	return e.Error
}

func TestRedirectToSlash(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, tc := range []struct{ path, want string }{
		{"/_", "/_/"},
		{"/_?tab=audit", "/_/?tab=audit"},
	} {
		r := do(t, "GET", base+tc.path, nil)
		if r.status != http.StatusTemporaryRedirect {
			t.Fatalf("GET %s: status %d, want 307", tc.path, r.status)
		}
		if got := r.header.Get("Location"); got != tc.want {
			t.Fatalf("GET %s: Location %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestServesFilesWithTypesAndCaching(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, tc := range []struct {
		path, ctype, cache, body string
	}{
		{"/_/", "text/html; charset=utf-8", "no-cache", testIndex},
		{"/_/index.html", "text/html; charset=utf-8", "no-cache", testIndex},
		{"/_/assets/index-Ab12Cd34.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console.log('hi')"},
		{"/_/assets/index-Ef56Gh78.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable", "body{}"},
		{"/_/logo.svg", "image/svg+xml", "no-cache", "<svg/>"},
		{"/_/assets/nested/font-1234.w2", "application/octet-stream", "public, max-age=31536000, immutable", "\x00\x01\x02"},
		// Dot segments are resolved inside the tree, never above it.
		{"/_/assets/../index.html", "text/html; charset=utf-8", "no-cache", testIndex},
	} {
		r := do(t, "GET", base+tc.path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", tc.path, r.status)
		}
		if got := r.header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := r.header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		if r.body != tc.body {
			t.Errorf("GET %s: body %q, want %q", tc.path, r.body, tc.body)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: missing nosniff", tc.path)
		}
	}
}

func TestIndexSecurityHeaders(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	r := do(t, "GET", base+"/_/", nil)
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options = %q", r.header.Get("X-Frame-Options"))
	}
}

func TestSPAFallbackIs200(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, p := range []string{"/_/orgs", "/_/orgs/acme", "/_/orgs/acme/formations/logistics", "/_/orgs/acme/sinks/"} {
		r := do(t, "GET", base+p, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200 (SPA fallback)", p, r.status)
		}
		if r.body != testIndex || r.header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("GET %s: did not get index.html with no-cache", p)
		}
	}
}

func TestMissingFilesAre404(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, p := range []string{"/_/assets/index-OLD.js", "/_/assets/sub", "/_/missing.png", "/_/.gitkeep"} {
		r := do(t, "GET", base+p, nil)
		if r.status != http.StatusNotFound {
			t.Fatalf("GET %s: status %d, want 404", p, r.status)
		}
		if msg := jsonError(t, r); msg != "not found" {
			t.Fatalf("GET %s: error %q", p, msg)
		}
	}
}

func TestOutsidePrefixIs404(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, p := range []string{"/", "/orgs", "/_x/index.html"} {
		r := do(t, "GET", base+p, nil)
		if r.status != http.StatusNotFound {
			t.Fatalf("GET %s: status %d, want 404", p, r.status)
		}
		jsonError(t, r)
	}
}

func TestHeadHasNoBody(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	r := do(t, "HEAD", base+"/_/assets/index-Ab12Cd34.js", nil)
	if r.status != http.StatusOK || r.body != "" {
		t.Fatalf("HEAD: status %d body %q", r.status, r.body)
	}
	if r.header.Get("Content-Length") != "17" {
		t.Fatalf("HEAD: Content-Length %q, want 17", r.header.Get("Content-Length"))
	}
	if r.header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("HEAD: Content-Type %q", r.header.Get("Content-Type"))
	}
}

func TestOtherMethodsAre405(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		for _, p := range []string{"/_", "/_/", "/_/orgs/acme", "/_/assets/index-Ab12Cd34.js"} {
			r := do(t, m, base+p, nil)
			if r.status != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s: status %d, want 405", m, p, r.status)
			}
			if got := r.header.Get("Allow"); got != "GET, HEAD" {
				t.Fatalf("%s %s: Allow %q", m, p, got)
			}
			if msg := jsonError(t, r); !strings.Contains(msg, "method not allowed") {
				t.Fatalf("%s %s: error %q", m, p, msg)
			}
		}
	}
}

func TestConditionalGet(t *testing.T) {
	base := serve(t, newHandler("/_", builtFS()))
	first := do(t, "GET", base+"/_/", nil)
	etag := first.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on index.html")
	}
	again := do(t, "GET", base+"/_/orgs/acme", map[string]string{"If-None-Match": "W/" + etag})
	if again.status != http.StatusNotModified || again.body != "" {
		t.Fatalf("revalidation: status %d body %q, want 304 and no body", again.status, again.body)
	}
	other := do(t, "GET", base+"/_/", map[string]string{"If-None-Match": `"stale"`})
	if other.status != http.StatusOK {
		t.Fatalf("stale ETag: status %d, want 200", other.status)
	}
}

func TestPrefixForms(t *testing.T) {
	for _, prefix := range []string{"/_", "_", "/_/"} {
		base := serve(t, newHandler(prefix, builtFS()))
		if r := do(t, "GET", base+"/_/orgs", nil); r.status != http.StatusOK || r.body != testIndex {
			t.Fatalf("prefix %q: GET /_/orgs status %d", prefix, r.status)
		}
	}
}

func TestNotBuiltPage(t *testing.T) {
	fsys := fstest.MapFS{".gitkeep": {Data: nil}}
	if built(fsys) {
		t.Fatal("built() true for a tree with only .gitkeep")
	}
	base := serve(t, newHandler("/_", fsys))
	for _, p := range []string{"/_/", "/_/orgs/acme"} {
		r := do(t, "GET", base+p, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d", p, r.status)
		}
		if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, "make ui") {
			t.Fatalf("GET %s: placeholder page missing: %q", p, r.body)
		}
	}
	if r := do(t, "GET", base+"/_/.gitkeep", nil); r.status != http.StatusNotFound {
		t.Fatalf("placeholder file served: status %d", r.status)
	}
}

// TestEmbedded checks the real embedded tree, whichever state it is in: CI
// builds the UI first, a plain `go test` before `make ui` sees the placeholder.
func TestEmbedded(t *testing.T) {
	_, err := os.Stat("dist/index.html")
	onDisk := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if Built() != onDisk {
		t.Fatalf("Built() = %v but dist/index.html exists = %v", Built(), onDisk)
	}
	base := serve(t, Handler(DefaultPrefix))
	r := do(t, "GET", base+"/_/orgs/acme", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /_/orgs/acme: status %d type %q", r.status, r.header.Get("Content-Type"))
	}
	if Built() {
		if !strings.Contains(r.body, `<div id="app">`) || !strings.Contains(r.body, "/_/assets/") {
			t.Fatalf("embedded index.html does not look like the Vite build with base /_/: %q", r.body)
		}
	} else if !strings.Contains(r.body, "make ui") {
		t.Fatalf("unbuilt UI should explain `make ui`: %q", r.body)
	}
}
