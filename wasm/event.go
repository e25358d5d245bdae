package wasm

import (
	"fmt"
	"strings"
)

// Event is one change record handed to a filter chain. The string fields and
// the timestamp travel to the guest as fixed binary fields, so most filters
// never parse Body.
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

// Verdict is a filter's decision about one event.
type Verdict uint8

// Verdicts, numbered as on the gw/v1 wire (filters/ABI.md).
const (
	Keep Verdict = iota
	Drop
	Replace
	Error
)

// String returns the lower-case spelling used by the filter test API.
func (v Verdict) String() string {
	switch v {
	case Keep:
		return "keep"
	case Drop:
		return "drop"
	case Replace:
		return "replace"
	case Error:
		return "error"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Outcome is what a chain decided for one input event. Run returns exactly one
// Outcome per input event, in input order.
type Outcome struct {
	Verdict Verdict
	// Body is the event body after every replacement in the chain; set only
	// when Verdict is Replace.
	Body []byte
	// Route names the sink a filter routed the event to; empty means the
	// default destinations.
	Route string
	// Filter is the binding that dropped or failed the event, or that last
	// failed it under the "pass" or "drop" policy.
	Filter string
	// Err is the module's error (guest error verdict, trap text, timeout,
	// open circuit) when the event failed somewhere in the chain.
	Err string
}

// Policy says what happens to an event a filter failed on (guest error
// verdict, trap, timeout or open circuit).
type Policy uint8

// Policies; the zero value is DeadLetter.
const (
	// DeadLetter stops the event with an Error outcome (the caller stores it
	// in its dead-letter store).
	DeadLetter Policy = iota
	// DropOnError drops the event.
	DropOnError
	// Pass hands the event on unchanged, as if the filter had kept it.
	Pass
)

// ParsePolicy reads the binding spelling: "dead_letter" (or empty), "drop", "pass".
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(s) {
	case "", "dead_letter":
		return DeadLetter, nil
	case "drop":
		return DropOnError, nil
	case "pass":
		return Pass, nil
	}
	return 0, fmt.Errorf("unknown on_error policy %q (want dead_letter, drop or pass)", s)
}

// String returns the binding spelling.
func (p Policy) String() string {
	switch p {
	case DropOnError:
		return "drop"
	case Pass:
		return "pass"
	}
	return "dead_letter"
}
