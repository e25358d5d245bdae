package api

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// DeliveryModule serves the delivery state of CDC sinks (status, dead
// letters, replay) and makes sink changes made through the API take effect
// at once: after a successful sink create, patch or delete (or org delete)
// it asks the dispatcher to reconcile instead of waiting for its next tick.
func DeliveryModule(d *cdc.Dispatcher, ten *tenant.Service) Module {
	return deliveryModule{d: d, ten: ten}
}

type deliveryModule struct {
	d   *cdc.Dispatcher
	ten *tenant.Service
}

// Dead-letter listing bounds.
const (
	defaultDeadLetterLimit = 100
	maxDeadLetterLimit     = 10000
)

func (m deliveryModule) Routes(r *Routes) {
	s := r.s
	r.Admin("GET", "/orgs/{org}/sinks/{sink}/status", func(c *fasthttp.RequestCtx, p []string) {
		if _, err := m.ten.GetSink(ctxOf(c), p[0], p[1]); err != nil {
			s.fail(c, err)
			return
		}
		st, err := m.d.Status(ctxOf(c), p[0], p[1])
		if err != nil {
			m.storeFail(s, c, p, err)
			return
		}
		writeJSON(c, 200, st)
	})
	r.Admin("GET", "/orgs/{org}/sinks/{sink}/dead-letters", func(c *fasthttp.RequestCtx, p []string) {
		limit := defaultDeadLetterLimit
		if v := c.QueryArgs().Peek("limit"); len(v) > 0 {
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 1 || n > maxDeadLetterLimit {
				writeError(c, 400, "limit must be an integer between 1 and "+strconv.Itoa(maxDeadLetterLimit))
				return
			}
			limit = n
		}
		if _, err := m.ten.GetSink(ctxOf(c), p[0], p[1]); err != nil {
			s.fail(c, err)
			return
		}
		dls, err := m.d.DeadLetters(ctxOf(c), p[0], p[1], limit)
		if err != nil {
			m.storeFail(s, c, p, err)
			return
		}
		out := make([]deadLetterJSON, len(dls))
		for i, dl := range dls {
			out[i] = deadLetterJSON{ID: dl.ID, SinkID: dl.SinkID, Seq: dl.Seq, Error: dl.Error, Attempts: dl.Attempts,
				CreatedAt: dl.CreatedAt, Replayed: dl.Replayed, Event: dl.Event}
		}
		writeJSON(c, 200, out)
	})
	r.Admin("POST", "/orgs/{org}/sinks/{sink}/dead-letters/replay", func(c *fasthttp.RequestCtx, p []string) {
		if _, err := m.ten.GetSink(ctxOf(c), p[0], p[1]); err != nil {
			s.fail(c, err)
			return
		}
		n, err := m.d.Replay(ctxOf(c), p[0], p[1])
		if err != nil {
			m.storeFail(s, c, p, err)
			return
		}
		// Accepted: the letters are delivered asynchronously, in order,
		// when the sink's worker reaches the replay request.
		writeJSON(c, 202, struct {
			SinkID string `json:"sink_id"`
			Queued int    `json:"queued"`
		}{p[1], n})
	})

	// Sink changes take effect immediately rather than on the next tick.
	for _, h := range []struct{ method, template string }{
		{"POST", "/orgs/{org}/sinks"},
		{"PATCH", "/orgs/{org}/sinks/{sink}"},
		{"DELETE", "/orgs/{org}/sinks/{sink}"},
		{"DELETE", "/orgs/{org}"},
	} {
		s.rt.after(h.method, h.template, func(c *fasthttp.RequestCtx) {
			if c.Response.StatusCode() < 300 {
				m.d.Reconcile()
			}
		})
	}
}

// storeFail maps a store error of a delivery call: a sink deleted between
// the existence check and the call is a 404 like any unknown sink.
func (m deliveryModule) storeFail(s *Server, c *fasthttp.RequestCtx, p []string, err error) {
	if isStoreNotFound(err) {
		_, gerr := m.ten.GetSink(ctxOf(c), p[0], p[1])
		if gerr != nil {
			s.fail(c, gerr)
			return
		}
	}
	s.fail(c, err)
}

func isStoreNotFound(err error) bool { return err != nil && errors.Is(err, store.ErrNotFound) }

// deadLetterJSON is a dead letter on the wire.
type deadLetterJSON struct {
	ID        int64          `json:"id"`
	SinkID    string         `json:"sink_id"`
	Seq       int64          `json:"seq"`
	Error     string         `json:"error"`
	Attempts  int            `json:"attempts"`
	CreatedAt uint64         `json:"created_at"`
	Replayed  bool           `json:"replayed"`
	Event     model.CdcEvent `json:"event"`
}

// after wraps an already registered handler so fn runs once it returns.
// Modules use it to react to core routes without the core knowing them.
func (r *router) after(method, template string, fn func(c *fasthttp.RequestCtx)) {
	for _, rt := range r.all {
		if rt.template != template {
			continue
		}
		h := rt.methods[method]
		if h == nil {
			return
		}
		rt.methods[method] = func(c *fasthttp.RequestCtx, p params) {
			h(c, p)
			fn(c)
		}
		return
	}
}
