// Package sdk is the Go guest SDK for peat-gateway filters (ABI gw/v1, see
// filters/ABI.md). A filter is a plain Go function over one event:
//
//	func init() {
//		sdk.Handle(func(e *sdk.Event) sdk.Result {
//			if e.Op == "delete" {
//				return sdk.Drop()
//			}
//			return sdk.Keep()
//		})
//	}
//
//	func main() {}
//
// built with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared. The SDK
// owns every gw/v1 export; on other platforms the package builds without
// them so filter logic can be unit-tested natively.
//
// The package imports nothing from the gateway and avoids encoding/json: the
// helpers in json.go read and edit JSON bytes in place, which is an order of
// magnitude cheaper inside wasm than decoding into maps.
package sdk

// Event is one change record. The strings and Body point into the host's
// batch frame: they are valid only until the filter function returns, so
// copy what you keep.
type Event struct {
	Op          string // "upsert", "delete", ...
	OrgID       string
	AppID       string
	DocumentID  string
	ChangeHash  string
	ActorID     string
	TimestampMs uint64
	Body        []byte // JSON
}

// Verdict is a filter's decision, numbered as on the wire.
type Verdict uint8

// Verdicts.
const (
	VerdictKeep Verdict = iota
	VerdictDrop
	VerdictReplace
	VerdictError
)

// Result is what a filter returns for one event.
type Result struct {
	verdict Verdict
	data    []byte
	route   string
}

// Keep passes the event on unchanged.
func Keep() Result { return Result{verdict: VerdictKeep} }

// Drop removes the event from the stream.
func Drop() Result { return Result{verdict: VerdictDrop} }

// Replace passes the event on with body as its new JSON body. body is copied,
// so it may alias the input or a reused buffer.
func Replace(body []byte) Result { return Result{verdict: VerdictReplace, data: body} }

// Fail reports that the filter could not handle this event; the host applies
// the binding's on_error policy (dead-letter by default) with msg.
func Fail(msg string) Result { return Result{verdict: VerdictError, data: []byte(msg)} }

// To routes a kept or replaced event to the named sink.
func (r Result) To(sink string) Result {
	r.route = sink
	return r
}

// Verdict returns the decision.
func (r Result) Verdict() Verdict { return r.verdict }

// Body returns the replacement body (VerdictReplace).
func (r Result) Body() []byte {
	if r.verdict == VerdictReplace {
		return r.data
	}
	return nil
}

// Message returns the error message (VerdictError).
func (r Result) Message() string {
	if r.verdict == VerdictError {
		return string(r.data)
	}
	return ""
}

// Route returns the sink set with To.
func (r Result) Route() string { return r.route }

// Filter decides about one event.
type Filter func(e *Event) Result

var (
	handler   Filter = func(*Event) Result { return Keep() }
	configure func(config []byte) error
)

// Handle registers the filter function; call it from init.
func Handle(f Filter) { handler = f }

// Configure registers a function that receives the binding's JSON config
// once per instance, before any event. An error refuses the binding and its
// text is shown to the operator.
func Configure(f func(config []byte) error) { configure = f }

// Apply runs the registered config function and then the filter on events,
// the way the host would; it lets filters be tested natively.
func Apply(config []byte, events []Event) ([]Result, error) {
	if configure != nil {
		if err := configure(config); err != nil {
			return nil, err
		}
	}
	out := make([]Result, len(events))
	for i := range events {
		out[i] = safeHandle(&events[i])
	}
	return out, nil
}

// safeHandle turns a panic in the filter into an error verdict for that event
// only, so one bad event does not cost the whole instance.
func safeHandle(e *Event) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Fail("filter panic: " + panicText(p))
		}
	}()
	return handler(e)
}

func panicText(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "non-error panic value"
}
