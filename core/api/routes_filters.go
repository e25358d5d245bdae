package api

import (
	"bytes"
	"encoding/json"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/model"
)

// FiltersModule serves the WebAssembly filter routes, all behind admin auth:
//
//	PUT    /orgs/{org}/filters/{name}          body = module (application/wasm); 201 new, 200 new version
//	GET    /orgs/{org}/filters                 latest version of each module
//	GET    /orgs/{org}/filters/{name}
//	DELETE /orgs/{org}/filters/{name}          409 while a sink or formation binds it
//	POST   /orgs/{org}/filters/{name}/test     dry run, delivers nothing
//	PUT    /orgs/{org}/formations/{app}/filters  {"filters":[...]}
//	GET    /orgs/{org}/formations/{app}/filters
//
// The test body is one CdcEvent, an array of them, or a wrapper
// {"events":[...],"config":{...}}; the config (the binding's gw_init JSON)
// may also come as the URL-encoded query parameter ?config=, which the
// wrapper's wins over. Missing event fields default to org_id = the path's
// org, op "upsert" and patches {}.
func FiltersModule(svc *filtering.Service) Module { return filtersModule{svc} }

type filtersModule struct{ svc *filtering.Service }

func (m filtersModule) Routes(r *Routes) {
	h := &filterHandlers{s: r.s, svc: m.svc}
	r.Admin("PUT", "/orgs/{org}/filters/{name}", h.put)
	r.Admin("GET", "/orgs/{org}/filters", h.list)
	r.Admin("GET", "/orgs/{org}/filters/{name}", h.get)
	r.Admin("DELETE", "/orgs/{org}/filters/{name}", h.delete)
	r.Admin("POST", "/orgs/{org}/filters/{name}/test", h.test)
	r.Admin("PUT", "/orgs/{org}/formations/{app}/filters", h.putFormation)
	r.Admin("GET", "/orgs/{org}/formations/{app}/filters", h.getFormation)
}

type filterHandlers struct {
	s   *Server
	svc *filtering.Service
}

// isWasmContentType accepts application/wasm (and application/octet-stream,
// which generic upload tools send).
func isWasmContentType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	return bytes.EqualFold(ct, []byte("application/wasm")) || bytes.EqualFold(ct, []byte("application/octet-stream"))
}

func (h *filterHandlers) put(c *fasthttp.RequestCtx, p []string) {
	if !isWasmContentType(c.Request.Header.ContentType()) {
		writeError(c, fasthttp.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/wasm`")
		return
	}
	// The raw body, not decodeJSON: modules may exceed the 2 MiB JSON limit
	// (the transport allows PEAT_FILTER_MAX_BYTES + 1 MiB; the service
	// enforces the module limit itself with a 400 naming the rule). The
	// copy detaches the bytes from fasthttp's reusable request buffer.
	body := append([]byte(nil), c.PostBody()...)
	m, created, err := h.svc.Put(ctxOf(c), p[0], p[1], body)
	if err != nil {
		h.s.fail(c, err)
		return
	}
	status := fasthttp.StatusOK
	if created {
		status = fasthttp.StatusCreated
	}
	writeJSON(c, status, m)
}

func (h *filterHandlers) list(c *fasthttp.RequestCtx, p []string) {
	ms, err := h.svc.List(ctxOf(c), p[0])
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, 200, ms)
}

func (h *filterHandlers) get(c *fasthttp.RequestCtx, p []string) {
	m, err := h.svc.Get(ctxOf(c), p[0], p[1])
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, 200, m)
}

func (h *filterHandlers) delete(c *fasthttp.RequestCtx, p []string) {
	if err := h.svc.Delete(ctxOf(c), p[0], p[1]); err != nil {
		h.s.fail(c, err)
		return
	}
	writeEmpty(c)
}

func (h *filterHandlers) test(c *fasthttp.RequestCtx, p []string) {
	var raw json.RawMessage
	if !decodeJSON(c, &raw) {
		return
	}
	var config json.RawMessage
	if q := c.QueryArgs().Peek("config"); len(q) > 0 {
		if !json.Valid(q) {
			writeError(c, fasthttp.StatusBadRequest, "query parameter config is not valid JSON")
			return
		}
		config = append(json.RawMessage(nil), q...)
	}
	events, cfg, ok := parseTestBody(c, raw)
	if !ok {
		return
	}
	if cfg != nil {
		config = cfg
	}
	for i := range events {
		ev := &events[i]
		if ev.OrgID == "" {
			ev.OrgID = p[0]
		} else if ev.OrgID != p[0] {
			writeError(c, fasthttp.StatusBadRequest, "event org_id must be the org of the path ('"+p[0]+"')")
			return
		}
		if ev.Op == "" {
			ev.Op = model.OpUpsert
		}
		if len(ev.Patches) == 0 || string(ev.Patches) == "null" {
			ev.Patches = json.RawMessage(`{}`)
		}
	}
	res, err := h.svc.Test(ctxOf(c), p[0], p[1], config, events)
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, 200, map[string]any{"results": res})
}

// parseTestBody accepts one event, an array of events, or the wrapper
// {"events":[...],"config":{...}}; it writes the 422 itself on a bad shape.
func parseTestBody(c *fasthttp.RequestCtx, raw json.RawMessage) ([]model.CdcEvent, json.RawMessage, bool) {
	bad := func(err error) ([]model.CdcEvent, json.RawMessage, bool) {
		writeError(c, fasthttp.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return nil, nil, false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var evs []model.CdcEvent
		if err := json.Unmarshal(raw, &evs); err != nil {
			return bad(err)
		}
		return evs, nil, true
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return bad(err)
	}
	if evRaw, ok := probe["events"]; ok {
		var w struct {
			Events []model.CdcEvent `json:"events"`
			Config json.RawMessage  `json:"config"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return bad(err)
		}
		if string(bytes.TrimSpace(evRaw)) == "null" {
			missing(c, "events")
			return nil, nil, false
		}
		if string(w.Config) == "null" {
			w.Config = nil
		}
		return w.Events, w.Config, true
	}
	var ev model.CdcEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return bad(err)
	}
	return []model.CdcEvent{ev}, nil, true
}

func (h *filterHandlers) putFormation(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		Filters *[]model.FilterRef `json:"filters"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.Filters == nil {
		missing(c, "filters")
		return
	}
	refs, err := h.svc.SetFormationChain(ctxOf(c), p[0], p[1], *req.Filters)
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, 200, map[string]any{"filters": refs})
}

func (h *filterHandlers) getFormation(c *fasthttp.RequestCtx, p []string) {
	refs, err := h.svc.FormationChain(ctxOf(c), p[0], p[1])
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, 200, map[string]any{"filters": refs})
}
