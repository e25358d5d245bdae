// Package ui embeds the admin single-page application (built by `make ui`
// into ui/dist) and serves it under a path prefix, normally "/_".
//
// The SPA calls the admin API at the origin root, so this handler only
// serves static files: it needs no auth, and it never answers API paths.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"path"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// dist holds the Vite build output. The `all:` prefix keeps the tracked
// dist/.gitkeep in the embed so that the package compiles before the UI has
// been built; Built reports which case this binary is.
//
//go:embed all:dist
var dist embed.FS

// DefaultPrefix is where the gateway mounts the UI; the Vite build bakes the
// same base path ("/_/") into every asset URL.
const DefaultPrefix = "/_"

// Built reports whether the binary embeds a real UI build rather than only
// the placeholder that lets the package compile.
func Built() bool {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return false
	}
	return built(sub)
}

func built(fsys fs.FS) bool {
	st, err := fs.Stat(fsys, "index.html")
	return err == nil && !st.IsDir()
}

// Handler serves the embedded UI under prefix (for example "/_"). It is
// meant to be routed every request whose path is prefix or starts with
// prefix + "/".
//
//   - prefix without the slash redirects to prefix + "/";
//   - existing files are served with their Content-Type; Vite's content-hashed
//     files under assets/ are cacheable forever, everything else is
//     revalidated (no-cache) so a new release is picked up at once;
//   - any other path without a file extension gets index.html with status
//     200, so client-side routes survive reloads and deep links;
//   - only GET and HEAD are allowed (405 JSON error with an Allow header);
//   - when the UI was not built, a short page explains how to build it.
func Handler(prefix string) fasthttp.RequestHandler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub only fails on an invalid name; "dist" is a constant.
		panic(err)
	}
	return newHandler(prefix, sub)
}

// HandlerFS serves a UI build from fsys (PEAT_UI_DIR: a build on disk
// instead of the embedded one) with the same rules as Handler. Files are read
// once, on the first request.
func HandlerFS(prefix string, fsys fs.FS) fasthttp.RequestHandler { return newHandler(prefix, fsys) }

// asset is one file prepared for serving: the body is read once at start-up
// because the embedded tree never changes while the process runs.
type asset struct {
	body        []byte
	contentType string
	etag        string
	immutable   bool
}

type handler struct {
	prefix string
	fsys   fs.FS

	once   sync.Once
	files  map[string]*asset
	index  *asset
	loaded error
}

func newHandler(prefix string, fsys fs.FS) fasthttp.RequestHandler {
	prefix = "/" + strings.Trim(prefix, "/")
	if prefix == "/" {
		prefix = ""
	}
	h := &handler{prefix: prefix, fsys: fsys}
	return h.serve
}

func (h *handler) load() {
	h.files = map[string]*asset{}
	h.loaded = fs.WalkDir(h.fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Dotfiles (the .gitkeep placeholder) are repository plumbing, not UI.
		if d.IsDir() || strings.HasPrefix(path.Base(name), ".") {
			return nil
		}
		body, err := fs.ReadFile(h.fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		h.files[name] = &asset{
			body:        body,
			contentType: contentType(name),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
			immutable:   strings.HasPrefix(name, "assets/"),
		}
		return nil
	})
	if a, ok := h.files["index.html"]; ok {
		h.index = a
	} else {
		h.index = &asset{body: []byte(notBuiltPage), contentType: "text/html; charset=utf-8"}
	}
}

func contentType(name string) string {
	ext := path.Ext(name)
	switch ext {
	// Pinned so the result does not depend on the host's mime tables.
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".wasm":
		return "application/wasm"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

func (h *handler) serve(ctx *fasthttp.RequestCtx) {
	h.once.Do(h.load)

	p := string(ctx.Path())
	if p != h.prefix && !strings.HasPrefix(p, h.prefix+"/") {
		writeError(ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if p == h.prefix {
		loc := h.prefix + "/"
		if q := ctx.URI().QueryString(); len(q) > 0 {
			loc += "?" + string(q)
		}
		// A relative Location stays correct behind proxies that rewrite Host.
		ctx.Response.Header.Set(fasthttp.HeaderLocation, loc)
		ctx.SetStatusCode(fasthttp.StatusTemporaryRedirect)
		return
	}
	if h.loaded != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "admin UI unavailable: "+h.loaded.Error())
		return
	}

	// path.Clean on a rooted path removes "..", so a request can never name
	// anything outside the embedded tree (which is all fs.FS exposes anyway).
	rel := strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(p, h.prefix+"/")), "/")
	if a, ok := h.files[rel]; ok {
		h.write(ctx, a)
		return
	}
	// A missing hashed asset or any name with an extension is a real miss:
	// answering it with HTML would hand the browser a page where it expects
	// a script or stylesheet.
	if strings.HasPrefix(rel, "assets/") || path.Ext(rel) != "" {
		writeError(ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	h.write(ctx, h.index)
}

func (h *handler) write(ctx *fasthttp.RequestCtx, a *asset) {
	hd := &ctx.Response.Header
	hd.SetContentType(a.contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	if a.immutable {
		hd.Set(fasthttp.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		hd.Set(fasthttp.HeaderCacheControl, "no-cache")
	}
	if strings.HasPrefix(a.contentType, "text/html") {
		// The admin UI must not be framed (clickjacking) and loads nothing
		// from other origins: it is built to run air-gapped.
		hd.Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "+
				"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "+
				"form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
	}
	if a.etag != "" {
		hd.Set(fasthttp.HeaderETag, a.etag)
		if inm := ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 && etagMatch(string(inm), a.etag) {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return
		}
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(a.body)
}

// etagMatch implements the weak comparison If-None-Match calls for.
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// writeError uses the gateway-wide error shape so clients need one parser.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

const notBuiltPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Peat Gateway — admin UI not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Admin UI not built</h1>
<p>This peat-gateway binary was compiled without the admin UI.
Run <code>make ui</code> (it runs <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>) and rebuild the binary.</p>
<p>The admin API itself is available at <code>/orgs</code>.</p>
</body>
</html>
`
