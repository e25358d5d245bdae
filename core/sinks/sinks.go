// Package sinks holds the CDC delivery drivers: NATS JetStream, Kafka and
// webhook. A driver makes exactly one delivery attempt for a batch of events
// and classifies the outcome of every event; scheduling retries, backoff,
// dead-lettering and cursors belong to the caller (the per-sink dispatcher).
//
// Drivers are built by a Factory, which owns the connections shared by every
// sink of the process (one NATS connection, one Kafka client, one HTTP client).
package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Sink kinds, spelled as the variant names of the sink_type JSON enum.
const (
	KindNats    = "Nats"
	KindKafka   = "Kafka"
	KindWebhook = "Webhook"
)

// Result is the outcome of one delivery attempt for one event.
type Result struct {
	// Err is nil when the target acknowledged the event durably.
	Err error
	// Permanent reports that retrying cannot help (an invalid subject, a 4xx
	// other than 408/429, an event that cannot be encoded): dead-letter now.
	Permanent bool
	// RetryAfter is positive when the target asked for a delay before the
	// next attempt (HTTP Retry-After).
	RetryAfter time.Duration
}

// Delivered reports whether the event was acknowledged by the target.
func (r Result) Delivered() bool { return r.Err == nil }

// Driver delivers CDC events to one sink.
type Driver interface {
	// Deliver attempts every event once, in order, and returns one Result per
	// event (same index). Per-document order holds: when an event of a
	// document fails, the later events of that document in the batch are
	// reported failed (retryable, ErrBlocked) rather than delivered ahead of it.
	Deliver(ctx context.Context, events []model.CdcEvent) []Result
	// Close releases resources owned by this driver (not the Factory's shared
	// connections).
	Close() error
}

// SinkSpec is the target configuration of one sink, the union of the fields
// of the sink_type variants ({"Nats":{"subject_prefix"}},
// {"Kafka":{"topic"}}, {"Webhook":{"url","secret"}}).
type SinkSpec struct {
	// OrgID, when set, is the org owning the sink: events of any other org
	// are refused (Permanent) as a last line of tenant isolation.
	OrgID         string `json:"-"`
	SubjectPrefix string `json:"subject_prefix,omitempty"`
	Topic         string `json:"topic,omitempty"`
	URL           string `json:"url,omitempty"`
	// Secret signs webhook deliveries (Standard Webhooks). Either
	// "whsec_<base64 key>" or any other string, used as raw key bytes.
	Secret string `json:"secret,omitempty"`
}

// ParseSinkType decodes an externally tagged sink_type value such as
// {"Nats":{"subject_prefix":"cdc"}} into its kind and spec.
func ParseSinkType(raw []byte) (kind string, spec SinkSpec, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", SinkSpec{}, errors.New("sink_type: not a JSON object")
	}
	if len(m) != 1 {
		return "", SinkSpec{}, errors.New("sink_type: exactly one variant expected")
	}
	for k, v := range m {
		kind = k
		if err := json.Unmarshal(v, &spec); err != nil {
			return "", SinkSpec{}, errors.New("sink_type: invalid " + k + " body")
		}
	}
	switch kind {
	case KindNats, KindKafka, KindWebhook:
		return kind, spec, nil
	}
	return "", SinkSpec{}, errors.New("sink_type: unknown variant " + kind)
}

// ErrBlocked is reported for an event that was not attempted (or whose
// outcome is withheld) because an earlier event of the same document in the
// batch failed. It is always retryable.
var ErrBlocked = errors.New("not delivered: an earlier event of the same document failed")

// ErrOtherOrg is reported (Permanent) for an event whose org is not the org
// owning the sink.
var ErrOtherOrg = errors.New("event belongs to another org than the sink")

// MarshalEvent returns the wire bytes of an event, identical for every sink
// and every attempt: compact JSON in field order, HTML characters unescaped
// (as the reference's serde_json emits them).
func MarshalEvent(ev *model.CdcEvent) ([]byte, error) {
	return model.MarshalEvent(*ev)
}

// Backoff returns the delay before retry number attempt (0 for the first
// retry): a uniformly random duration in [0, min(max, base·2^attempt)]
// ("full jitter"), which spreads retries of many sinks failing together.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	ceil := max
	if attempt < 62 {
		if d := base << uint(attempt); d > 0 && d < max && d>>uint(attempt) == base {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// docKey identifies a document for ordering purposes.
type docKey struct{ org, app, doc string }

func keyOf(ev *model.CdcEvent) docKey { return docKey{ev.OrgID, ev.AppID, ev.DocumentID} }

// waves splits a batch into rounds where round k holds the k-th event of each
// document, keeping batch order inside a round. Publishing a round and
// awaiting its acks before the next one keeps per-document order on the
// target even with pipelined publishes, while batches of distinct documents
// (the common case) still go out as one fully pipelined round.
func waves(events []model.CdcEvent) [][]int {
	seen := make(map[docKey]int, len(events))
	var out [][]int
	for i := range events {
		k := keyOf(&events[i])
		n := seen[k]
		seen[k] = n + 1
		if n == len(out) {
			out = append(out, make([]int, 0, len(events)))
		}
		out[n] = append(out[n], i)
	}
	return out
}

// failedDocs tracks documents with a failed event so later events of those
// documents are reported ErrBlocked.
type failedDocs map[docKey]struct{}

func (f failedDocs) blocked(ev *model.CdcEvent) bool {
	_, ok := f[keyOf(ev)]
	return ok
}

func (f failedDocs) mark(ev *model.CdcEvent) { f[keyOf(ev)] = struct{}{} }
