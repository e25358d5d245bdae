package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Stream settings of the reference (cdc-and-ingress.md §3.3).
const (
	streamDupWindow = 120 * time.Second
	streamMaxAge    = 7 * 24 * time.Hour
	streamMaxBytes  = 1 << 30
)

// natsShared is the per-process NATS state shared by every NATS sink.
type natsShared struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	streams *streamCache
}

// ErrNATSDisconnected is reported (retryable) while the NATS connection is
// down; the client keeps reconnecting in the background.
var ErrNATSDisconnected = errors.New("NATS connection is down (reconnecting)")

type natsDriver struct {
	sh     *natsShared
	org    string
	prefix string
}

func newNATSDriver(sh *natsShared, spec SinkSpec) (*natsDriver, error) {
	p := strings.TrimSpace(spec.SubjectPrefix)
	if err := validPrefix(p); err != nil {
		return nil, err
	}
	return &natsDriver{sh: sh, org: spec.OrgID, prefix: p}, nil
}

// validToken reports whether s can be one NATS subject token: not empty, no
// separator or wildcard, no whitespace or control characters (which the
// protocol uses as delimiters).
func validToken(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("subject_prefix is empty")
	}
	toks := strings.Split(p, ".")
	for _, t := range toks {
		if !validToken(t) {
			return fmt.Errorf("subject_prefix %q is not a valid NATS subject (empty token, wildcard or whitespace)", p)
		}
	}
	// A prefix whose second token is "ctl" maps every event into the
	// ingress control space {org}.*.ctl.> (see streamSubject).
	if len(toks) > 1 && toks[1] == "ctl" {
		return fmt.Errorf("subject_prefix %q: a second token \"ctl\" collides with the control-plane ingress subjects {org}.*.ctl.>", p)
	}
	return nil
}

// StreamName is the JetStream stream holding the events of one (org,
// prefix): "peat-gw-cdc-{org}-{prefix}" with every character outside
// [A-Za-z0-9_-] replaced by '-', as in the reference.
func StreamName(org, prefix string) string {
	return "peat-gw-cdc-" + sanitizeStreamToken(org) + "-" + sanitizeStreamToken(prefix)
}

func sanitizeStreamToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, s)
}

// Subject is the subject of an event: {org}.{prefix}.{app}.{doc}.
func Subject(prefix string, ev *model.CdcEvent) string {
	return ev.OrgID + "." + prefix + "." + ev.AppID + "." + ev.DocumentID
}

// streamSubject is the stream filter capturing the events of one formation:
// {org}.{prefix}.{app}.* (one entry per formation, added as formations
// appear).
//
// Why not the reference's single {org}.{prefix}.> filter: the control-plane
// ingress stream captures {org}.*.ctl.>, and JetStream refuses two streams
// whose filters overlap (error 10065). {org}.{prefix}.> overlaps it for every
// one-token prefix ({org}.cdc.ctl.x matches both), so whichever stream is
// created second would fail. A per-formation filter fixes the third token to
// the app id (or to the prefix's second token), so it can only collide when
// that token is literally "ctl": prefixes with "ctl" as second token are
// refused at sink creation, and the events of a formation named "ctl" under a
// one-token prefix are refused as Permanent (their subject really is inside
// the ingress space, where an ingress consumer would read them as commands).
// The per-formation filters never collide with each other either, also for
// nested prefixes (a and a.b) that overlap in the reference.
func streamSubject(prefix string, ev *model.CdcEvent) string {
	return ev.OrgID + "." + prefix + "." + ev.AppID + ".*"
}

// ingressFilter is the control-plane ingress stream filter of an org.
func ingressFilter(org string) string { return org + ".*.ctl.>" }

// subjectsCollide reports whether some subject matches both filters.
func subjectsCollide(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(ta) && i < len(tb); i++ {
		x, y := ta[i], tb[i]
		if x == ">" || y == ">" {
			// '>' needs at least one token, which the other side has here.
			return true
		}
		if x != "*" && y != "*" && x != y {
			return false
		}
	}
	return len(ta) == len(tb)
}

// filterCovers reports whether every subject matched by sub is matched by
// filter.
func filterCovers(filter, sub string) bool {
	tf, ts := strings.Split(filter, "."), strings.Split(sub, ".")
	for i, f := range tf {
		if f == ">" {
			return len(ts) > i
		}
		if i >= len(ts) {
			return false
		}
		switch s := ts[i]; {
		case s == ">":
			return false
		case f == "*":
		case f != s:
			return false
		}
	}
	return len(tf) == len(ts)
}

// prep validates an event and returns its subject and stream filter, or a
// permanent error.
func (d *natsDriver) prep(ev *model.CdcEvent) (subj, filter string, err error) {
	if d.org != "" && ev.OrgID != d.org {
		return "", "", ErrOtherOrg
	}
	for _, f := range [...]struct{ name, v string }{{"org_id", ev.OrgID}, {"app_id", ev.AppID}, {"document_id", ev.DocumentID}} {
		if !validToken(f.v) {
			return "", "", fmt.Errorf("%s %q cannot be a NATS subject token (empty, '.', '*', '>' or whitespace)", f.name, f.v)
		}
	}
	filter = streamSubject(d.prefix, ev)
	if subjectsCollide(filter, ingressFilter(ev.OrgID)) {
		return "", "", fmt.Errorf("subject %s falls in the control-plane ingress space %s", Subject(d.prefix, ev), ingressFilter(ev.OrgID))
	}
	return Subject(d.prefix, ev), filter, nil
}

// Deliver publishes the batch with pipelined JetStream publishes (bounded by
// the connection's async window) and waits for every ack.
func (d *natsDriver) Deliver(ctx context.Context, events []model.CdcEvent) []Result {
	res := make([]Result, len(events))
	if !d.sh.nc.IsConnected() {
		for i := range res {
			res[i] = Result{Err: ErrNATSDisconnected}
		}
		return res
	}
	type prepared struct {
		subj, stream string
		data         []byte
		ok           bool
	}
	pre := make([]prepared, len(events))
	ensured := map[string]error{} // one ensure per filter and call, even when it fails
	maxPayload := d.sh.nc.MaxPayload()
	for i := range events {
		ev := &events[i]
		subj, filter, err := d.prep(ev)
		if err != nil {
			res[i] = Result{Err: err, Permanent: true}
			continue
		}
		data, err := MarshalEvent(ev)
		if err != nil {
			res[i] = Result{Err: fmt.Errorf("encode event: %w", err), Permanent: true}
			continue
		}
		if maxPayload > 0 && int64(len(data)) > maxPayload {
			res[i] = Result{Err: fmt.Errorf("event of %d bytes exceeds the NATS max payload %d", len(data), maxPayload), Permanent: true}
			continue
		}
		stream := StreamName(ev.OrgID, d.prefix)
		err, seen := ensured[filter]
		if !seen {
			err = d.sh.streams.ensure(ctx, d.sh.js, stream, filter)
			ensured[filter] = err
		}
		if err != nil {
			res[i] = Result{Err: err}
			continue
		}
		pre[i] = prepared{subj: subj, stream: stream, data: data, ok: true}
	}

	failed := failedDocs{}
	futs := make([]jetstream.PubAckFuture, len(events))
	for _, wave := range waves(events) {
		for _, i := range wave {
			ev := &events[i]
			if failed.blocked(ev) {
				res[i] = Result{Err: ErrBlocked}
				continue
			}
			if !pre[i].ok {
				failed.mark(ev)
				continue
			}
			msg := &nats.Msg{Subject: pre[i].subj, Data: pre[i].data, Header: nats.Header{}}
			if ev.ChangeHash != "" {
				msg.Header.Set(jetstream.MsgIDHeader, ev.ChangeHash)
			}
			f, err := d.sh.js.PublishMsgAsync(msg)
			if err != nil {
				res[i] = Result{Err: fmt.Errorf("NATS publish %s: %w", pre[i].subj, err)}
				failed.mark(ev)
				continue
			}
			futs[i] = f
		}
		for _, i := range wave {
			f := futs[i]
			if f == nil {
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
					// The stream vanished behind the cache: ensure it again
					// on the next attempt.
					d.sh.streams.forget(pre[i].stream)
				}
				res[i] = Result{Err: fmt.Errorf("NATS publish %s: %w", pre[i].subj, err)}
				failed.mark(&events[i])
			case <-ctx.Done():
				res[i] = Result{Err: ctx.Err()}
				failed.mark(&events[i])
			}
		}
	}
	return res
}

// Close is a no-op: the connection belongs to the Factory.
func (d *natsDriver) Close() error { return nil }

// streamCache remembers which stream filters are known to exist, so the
// JetStream API is consulted once per (stream, formation) and process.
type streamCache struct {
	mu    sync.Mutex
	done  map[string]map[string]bool // stream -> filters ensured
	locks map[string]*sync.Mutex     // stream -> serialises ensure calls
}

func newStreamCache() *streamCache {
	return &streamCache{done: map[string]map[string]bool{}, locks: map[string]*sync.Mutex{}}
}

func (c *streamCache) has(stream, filter string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done[stream][filter]
}

func (c *streamCache) lock(stream string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.locks[stream]
	if l == nil {
		l = &sync.Mutex{}
		c.locks[stream] = l
	}
	return l
}

func (c *streamCache) add(stream, filter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done[stream] == nil {
		c.done[stream] = map[string]bool{}
	}
	c.done[stream][filter] = true
}

func (c *streamCache) forget(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.done, stream)
}

// ensure makes stream exist with filter among its subjects. A missing stream
// is created with the reference's limits; an existing one (possibly made by
// an operator, or by the Rust gateway with {org}.{prefix}.>) keeps its
// settings and only gains the filter if none of its subjects covers it.
// Creating and updating are idempotent, and a race with another replica is
// resolved by reading the stream again.
func (c *streamCache) ensure(ctx context.Context, js jetstream.JetStream, stream, filter string) error {
	if c.has(stream, filter) {
		return nil
	}
	l := c.lock(stream)
	l.Lock()
	defer l.Unlock()
	if c.has(stream, filter) {
		return nil
	}
	var err error
	for range 3 {
		if err = ensureOnce(ctx, js, stream, filter); err == nil {
			c.add(stream, filter)
			return nil
		}
		// Only a race with another replica (the stream appeared or
		// vanished between our read and write) is worth an immediate retry;
		// anything else goes back to the dispatcher's backoff.
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
	}
	return fmt.Errorf("ensure stream %s with subject %s: %w", stream, filter, err)
}

func ensureOnce(ctx context.Context, js jetstream.JetStream, stream, filter string) error {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       stream,
			Subjects:   []string{filter},
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Discard:    jetstream.DiscardOld,
			Duplicates: streamDupWindow,
			MaxAge:     streamMaxAge,
			MaxBytes:   streamMaxBytes,
			Replicas:   1,
		})
		return err
	}
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	for _, sub := range cfg.Subjects {
		if filterCovers(sub, filter) {
			return nil
		}
	}
	cfg.Subjects = append(cfg.Subjects, filter)
	_, err = js.UpdateStream(ctx, cfg)
	return err
}
