// Command route is a peat-gateway filter that routes events to a named sink
// by document type.
//
// Config: {"type_field": "type", "routes": {"order": "orders-sink",
// "user": "users-sink"}, "default": "misc-sink"}. The type is the string at
// the body path type_field (default "type"); when the body has none, it is
// the document_id prefix before the first ':' or '/' ("order:42" → "order").
// Unmatched types go to "default", or stay on the default destinations when
// it is empty.
package main

import (
	"errors"
	"strings"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
)

var (
	typeField = "type"
	routes    map[string]string
	fallback  string
)

func main() {}

func init() {
	sdk.Configure(configure)
	sdk.Handle(route)
}

func configure(cfg []byte) error {
	typeField, routes, fallback = "type", map[string]string{}, ""
	if f, ok := sdk.GetString(cfg, "type_field"); ok && f != "" {
		typeField = f
	}
	raw, ok := sdk.Get(cfg, "routes")
	bad := false
	if !ok || !sdk.Members(raw, func(k string, v []byte) bool {
		s, ok := sdk.Unquote(v)
		if !ok || s == "" {
			bad = true
			return false
		}
		routes[k] = s
		return true
	}) || bad {
		return errors.New(`route: config needs "routes", an object of document type to sink name`)
	}
	fallback, _ = sdk.GetString(cfg, "default")
	return nil
}

func docType(e *sdk.Event) string {
	if t, ok := sdk.GetString(e.Body, typeField); ok {
		return t
	}
	if i := strings.IndexAny(e.DocumentID, ":/"); i > 0 {
		return e.DocumentID[:i]
	}
	return ""
}

func route(e *sdk.Event) sdk.Result {
	if sink, ok := routes[docType(e)]; ok {
		return sdk.Keep().To(sink)
	}
	if fallback != "" {
		return sdk.Keep().To(fallback)
	}
	return sdk.Keep()
}
