package api

import (
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// handler serves one matched route; params are the decoded path parameters
// in template order.
type handler func(c *fasthttp.RequestCtx, p params)

// params holds a matched route's path parameters.
type params []string

// route is one template such as /orgs/{org}/formations/{app}.
type route struct {
	template string
	segs     []string // literal segment, or "" for a parameter
	methods  map[string]handler
	admin    bool
}

// router matches raw path segments against templates. It is hand-written,
// not a library router, because the reference's matching rules must hold
// exactly: parameters are matched on the raw (still percent-encoded) path and
// decoded afterwards, so %2F stays inside one parameter; trailing slashes never
// match and never redirect; HEAD is answered by GET routes; a path that matches
// with another method gets 405 with Allow, after admin auth.
type router struct {
	byLen map[int][]*route
	all   []*route
}

func newRouter() *router { return &router{byLen: map[int][]*route{}} }

func (r *router) handle(method, template string, admin bool, h handler) {
	for _, rt := range r.all {
		if rt.template == template {
			rt.methods[method] = h
			return
		}
	}
	rt := &route{template: template, methods: map[string]handler{method: h}, admin: admin}
	for _, s := range strings.Split(strings.Trim(template, "/"), "/") {
		if strings.HasPrefix(s, "{") {
			s = ""
		}
		rt.segs = append(rt.segs, s)
	}
	r.all = append(r.all, rt)
	r.byLen[len(rt.segs)] = append(r.byLen[len(rt.segs)], rt)
}

// match finds the route for a raw path. ok is false when no template matches.
func (r *router) match(raw []byte, p *params) (*route, bool) {
	if len(raw) < 2 || raw[0] != '/' || raw[len(raw)-1] == '/' {
		return nil, false
	}
	path := string(raw[1:])
	n := strings.Count(path, "/") + 1
	var segs [8]string
	if n > len(segs) {
		return nil, false
	}
	for i := 0; i < n; i++ {
		j := strings.IndexByte(path, '/')
		if j < 0 {
			segs[i] = path
		} else {
			segs[i], path = path[:j], path[j+1:]
		}
		if segs[i] == "" {
			return nil, false
		}
	}
outer:
	for _, rt := range r.byLen[n] {
		for i, s := range rt.segs {
			if s != "" && s != segs[i] {
				continue outer
			}
		}
		*p = (*p)[:0]
		for i, s := range rt.segs {
			if s == "" {
				v := segs[i]
				if strings.IndexByte(v, '%') >= 0 {
					if d, err := url.PathUnescape(v); err == nil {
						v = d
					}
				}
				*p = append(*p, v)
			}
		}
		return rt, true
	}
	return nil, false
}

// allow lists a route's methods for the Allow header.
func (rt *route) allow() string {
	var ms []string
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		if _, ok := rt.methods[m]; ok || (m == "HEAD" && rt.methods["GET"] != nil) {
			ms = append(ms, m)
		}
	}
	return strings.Join(ms, ",")
}

// RouteInfo describes one registered route.
type RouteInfo struct {
	Method, Template string
	Admin            bool
}

// RouteTable lists every registered route, for documentation and for tests
// that must cover every route (such as the admin-auth walk).
func (s *Server) RouteTable() []RouteInfo {
	var out []RouteInfo
	for _, rt := range s.rt.all {
		for m := range rt.methods {
			out = append(out, RouteInfo{Method: m, Template: rt.template, Admin: rt.admin})
		}
	}
	return out
}
