// Command drop is a peat-gateway filter that drops events matching a field
// predicate.
//
// Config: {"field": "op", "equals": "delete"}, {"field": "status",
// "in": ["spam", "test"]} or {"field": "debug", "exists": true}. The field is
// an envelope field (op, org_id, app_id, document_id, change_hash, actor_id;
// read without touching JSON) or else a dotted path into the body (an
// optional "body." prefix is accepted).
package main

import (
	"errors"
	"strings"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
)

var (
	envelope func(e *sdk.Event) string // nil for body paths
	path     string
	values   map[string]bool // canonical forms of equals/in; nil for exists
	exists   bool
)

func main() {}

func init() {
	sdk.Configure(configure)
	sdk.Handle(filter)
}

var envelopeFields = map[string]func(e *sdk.Event) string{
	"op":          func(e *sdk.Event) string { return e.Op },
	"org_id":      func(e *sdk.Event) string { return e.OrgID },
	"app_id":      func(e *sdk.Event) string { return e.AppID },
	"document_id": func(e *sdk.Event) string { return e.DocumentID },
	"change_hash": func(e *sdk.Event) string { return e.ChangeHash },
	"actor_id":    func(e *sdk.Event) string { return e.ActorID },
}

// canonical makes config and body values comparable: strings unquoted,
// other JSON (numbers, booleans, null) as trimmed text.
func canonical(raw []byte) string {
	if s, ok := sdk.Unquote(raw); ok {
		return s
	}
	return strings.TrimSpace(string(raw))
}

func configure(cfg []byte) error {
	envelope, values, exists = nil, nil, false
	field, ok := sdk.GetString(cfg, "field")
	if !ok || field == "" {
		return errors.New(`drop: config needs "field"`)
	}
	envelope = envelopeFields[field]
	path = strings.TrimPrefix(field, "body.")
	if raw, ok := sdk.Get(cfg, "equals"); ok {
		values = map[string]bool{canonical(raw): true}
	} else if raw, ok := sdk.Get(cfg, "in"); ok {
		values = map[string]bool{}
		if !sdk.Each(raw, func(_ int, el []byte) bool { values[canonical(el)] = true; return true }) {
			return errors.New(`drop: "in" must be a list`)
		}
	} else if raw, ok := sdk.Get(cfg, "exists"); ok && string(raw) == "true" {
		exists = true
	} else {
		return errors.New(`drop: config needs one of "equals", "in" or "exists": true`)
	}
	return nil
}

func filter(e *sdk.Event) sdk.Result {
	if envelope != nil {
		if exists || values[envelope(e)] {
			return sdk.Drop()
		}
		return sdk.Keep()
	}
	raw, ok := sdk.Get(e.Body, path)
	if ok && (exists || values[canonical(raw)]) {
		return sdk.Drop()
	}
	return sdk.Keep()
}
