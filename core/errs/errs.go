// Package errs gives domain errors a kind, so the API layer can choose a
// status code without the domain knowing about HTTP. The message is the
// reference's text (clients match substrings of it) and is safe to show:
// it never carries a secret.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies a domain error.
type Kind int

// Error kinds; the API maps each to one status code.
const (
	Internal      Kind = iota // 500
	Invalid                   // 400
	NotFound                  // 404
	Quota                     // 429
	RateLimited               // 429
	Conflict                  // 409
	Unauthorized              // 401
	Forbidden                 // 403
	Unprocessable             // 422
	StorageFull               // 507
	Unavailable               // 503
)

// Error is a domain error with a kind and a client-safe message.
type Error struct {
	Kind Kind
	Msg  string
	// Err is the cause, for logs; never shown to clients.
	Err error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind k with a formatted message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k that keeps cause for logging.
func Wrap(k Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// KindOf returns the kind of err (Internal for foreign errors).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}
