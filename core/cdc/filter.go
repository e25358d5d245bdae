package cdc

import (
	"context"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Filter runs a chain of tenant filter modules over a batch of one org's
// events. The wasm engine implements it; a nil Filter in Options means no
// filtering at all (chains are then not even looked up).
type Filter interface {
	// Apply runs chain over events in order and returns one outcome per
	// event (same index). It must not block on one tenant's module for
	// longer than that module's time limit.
	Apply(ctx context.Context, org string, chain []model.FilterRef, events []model.CdcEvent) []FilterOutcome
}

// Verdict is what a filter chain decided for one event.
type Verdict int

// Verdicts.
const (
	// Keep delivers the event unchanged.
	Keep Verdict = iota
	// Replace delivers FilterOutcome.Event instead.
	Replace
	// Drop delivers nothing; the event counts as handled (filtered).
	Drop
	// Fail means the chain failed (trap, timeout, bad output); Policy says
	// what happens to the event.
	Fail
)

// ErrorPolicy is what happens to an event whose filter chain failed.
type ErrorPolicy int

// Error policies.
const (
	// DeadLetter stores the original event in the sink's dead letters
	// (replay runs the chain again, so a fixed module gets another chance).
	DeadLetter ErrorPolicy = iota
	// DropEvent discards the event.
	DropEvent
	// Pass delivers the original event unfiltered.
	Pass
)

// FilterOutcome is the result of a chain for one event.
type FilterOutcome struct {
	Verdict Verdict
	// Event is the replacement (Verdict Replace).
	Event model.CdcEvent
	// Err describes a failure (Verdict Fail).
	Err string
	// Policy applies with Verdict Fail.
	Policy ErrorPolicy
}
