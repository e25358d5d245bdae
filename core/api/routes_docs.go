package api

import (
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/docs"
)

// DocsModule serves the document API (the CDC source over HTTP) and
// POST /orgs/{org}/cdc/test, all behind admin auth.
func DocsModule(svc *docs.Service) Module { return docsModule{svc} }

type docsModule struct{ svc *docs.Service }

func (m docsModule) Routes(r *Routes) {
	h := &docsHandlers{s: r.s, svc: m.svc}
	r.Admin("PUT", "/orgs/{org}/formations/{app}/documents/{doc}", h.put)
	r.Admin("DELETE", "/orgs/{org}/formations/{app}/documents/{doc}", h.delete)
	r.Admin("GET", "/orgs/{org}/formations/{app}/documents/{doc}", h.get)
	r.Admin("GET", "/orgs/{org}/formations/{app}/documents", h.list)
	r.Admin("POST", "/orgs/{org}/cdc/test", h.cdcTest)
}

type docsHandlers struct {
	s   *Server
	svc *docs.Service
}

// actorHeader names the writer of a change (actor_id of its event).
const actorHeader = "X-Peat-Actor"

func (h *docsHandlers) put(c *fasthttp.RequestCtx, p []string) {
	if !isJSONContentType(c.Request.Header.ContentType()) {
		writeError(c, fasthttp.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return
	}
	body := c.PostBody()
	if len(body) > MaxJSONBody {
		writeError(c, fasthttp.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
		return
	}
	res, err := h.svc.Put(ctxOf(c), p[0], p[1], p[2], string(c.Request.Header.Peek(actorHeader)), body)
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeResult(c, res)
}

func (h *docsHandlers) delete(c *fasthttp.RequestCtx, p []string) {
	res, err := h.svc.Delete(ctxOf(c), p[0], p[1], p[2], string(c.Request.Header.Peek(actorHeader)))
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeResult(c, res)
}

// writeResult encodes {"document_id","change_hash","changed"} by hand: this
// is the hottest reply of the gateway, and both strings are known to need no
// escaping (a validated identifier and a hex hash).
func writeResult(c *fasthttp.RequestCtx, r docs.Result) {
	b := make([]byte, 0, 64+len(r.DocumentID)+len(r.ChangeHash))
	b = append(b, `{"document_id":"`...)
	b = append(b, r.DocumentID...)
	b = append(b, `","change_hash":"`...)
	b = append(b, r.ChangeHash...)
	b = append(b, `","changed":`...)
	b = strconv.AppendBool(b, r.Changed)
	b = append(b, '}')
	c.SetStatusCode(fasthttp.StatusOK)
	c.Response.Header.SetContentTypeBytes(jsonCT)
	c.SetBody(b)
}

func (h *docsHandlers) get(c *fasthttp.RequestCtx, p []string) {
	d, err := h.svc.Get(ctxOf(c), p[0], p[1], p[2])
	if err != nil {
		h.s.fail(c, err)
		return
	}
	// The hash and version let a client tie what it read to a change event.
	c.Response.Header.Set("X-Peat-Change-Hash", d.ChangeHash)
	c.Response.Header.Set("X-Peat-Version", strconv.FormatUint(d.Version, 10))
	c.SetStatusCode(fasthttp.StatusOK)
	c.Response.Header.SetContentTypeBytes(jsonCT)
	c.SetBody(d.Body)
}

func (h *docsHandlers) list(c *fasthttp.RequestCtx, p []string) {
	ds, err := h.svc.List(ctxOf(c), p[0], p[1])
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, ds)
}

func (h *docsHandlers) cdcTest(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		AppID      *string         `json:"app_id"`
		DocumentID *string         `json:"document_id"`
		ActorID    *string         `json:"actor_id"`
		Patches    json.RawMessage `json:"patches"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.AppID == nil {
		missing(c, "app_id")
		return
	}
	if req.DocumentID == nil {
		missing(c, "document_id")
		return
	}
	tr := docs.TestRequest{AppID: *req.AppID, DocumentID: *req.DocumentID, Patches: req.Patches}
	if req.ActorID != nil {
		tr.ActorID = *req.ActorID
	}
	res, err := h.svc.TestEvent(ctxOf(c), p[0], tr)
	if err != nil {
		h.s.fail(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, res)
}
