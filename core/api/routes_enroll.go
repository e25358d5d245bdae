package api

import (
	"bytes"
	"encoding/json"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/enroll"
)

// EnrollModule serves enrollment (public) and the formation certificate
// inventory, revocation, revocation list and peers (admin).
func EnrollModule(svc *enroll.Service) Module { return enrollModule{svc} }

type enrollModule struct{ svc *enroll.Service }

func (m enrollModule) Routes(r *Routes) {
	s := r.s
	r.Public("POST", "/orgs/{org}/formations/{app}/enroll", func(c *fasthttp.RequestCtx, p []string) { m.enroll(s, c, p) })
	r.Admin("GET", "/orgs/{org}/formations/{app}/certificates", func(c *fasthttp.RequestCtx, p []string) {
		cs, err := m.svc.Certificates(c, p[0], p[1])
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c, 200, cs)
	})
	r.Admin("POST", "/orgs/{org}/formations/{app}/certificates/{serial}/revoke", func(c *fasthttp.RequestCtx, p []string) {
		cert, err := m.svc.RevokeCertificate(c, p[0], p[1], p[2])
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c, 200, cert)
	})
	r.Admin("GET", "/orgs/{org}/formations/{app}/revocations", func(c *fasthttp.RequestCtx, p []string) {
		l, err := m.svc.Revocations(c, p[0], p[1])
		if err != nil {
			s.fail(c, err)
			return
		}
		// Mesh nodes may fetch the bare PRVL bytes; everyone else gets JSON.
		if bytes.Contains(c.Request.Header.Peek("Accept"), []byte("application/octet-stream")) {
			c.SetStatusCode(200)
			c.Response.Header.SetContentType("application/octet-stream")
			c.SetBody(l.Raw)
			return
		}
		writeJSON(c, 200, l)
	})
	r.Admin("GET", "/orgs/{org}/formations/{app}/peers", func(c *fasthttp.RequestCtx, p []string) {
		ps, err := m.svc.Peers(c, p[0], p[1])
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c, 200, ps)
	})
}

// enrollBody is the optional request body (anchor-api.md §8.1).
type enrollBody struct {
	Token     *string `json:"token"`
	PublicKey *string `json:"public_key"`
	NodeID    *string `json:"node_id"`
}

// enroll never rejects a body: as in the reference, a missing, non-JSON,
// oversized or wrongly typed body means "no body".
func (m enrollModule) enroll(s *Server, c *fasthttp.RequestCtx, p []string) {
	var b enrollBody
	if raw := c.PostBody(); len(raw) > 0 && len(raw) <= MaxJSONBody && isJSONContentType(c.Request.Header.ContentType()) {
		if json.Unmarshal(raw, &b) != nil {
			b = enrollBody{}
		}
	}
	resp, err := m.svc.Enroll(c, p[0], p[1], enroll.Request{
		Authorization: string(c.Request.Header.Peek("Authorization")),
		Token:         b.Token, PublicKey: b.PublicKey, NodeID: b.NodeID,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, resp)
}
