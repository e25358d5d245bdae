// Command redact is a peat-gateway filter that removes or masks configured
// JSON paths of each event body.
//
// Config: {"paths": ["password", "card.number"], "mask": "***"}. Without
// "mask" the members are removed; with it their values become that string.
package main

import (
	"errors"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
)

var (
	paths []string
	mask  []byte // quoted JSON string, nil to remove
	// Two scratch buffers used alternately, so redacting several paths
	// allocates nothing once they have grown.
	scratch [2][]byte
)

func main() {}

func init() {
	sdk.Configure(configure)
	sdk.Handle(redact)
}

func configure(cfg []byte) error {
	paths, mask = nil, nil
	raw, ok := sdk.Get(cfg, "paths")
	bad := !ok
	if ok && !sdk.Each(raw, func(_ int, el []byte) bool {
		p, ok := sdk.Unquote(el)
		if !ok || p == "" {
			bad = true
			return false
		}
		paths = append(paths, p)
		return true
	}) {
		bad = true
	}
	if bad || len(paths) == 0 {
		return errors.New(`redact: config needs "paths", a non-empty list of dotted JSON paths`)
	}
	if raw, ok := sdk.Get(cfg, "mask"); ok {
		m, ok := sdk.Unquote(raw)
		if !ok {
			return errors.New(`redact: "mask" must be a string`)
		}
		mask = sdk.Quote(nil, m)
	}
	return nil
}

func redact(e *sdk.Event) sdk.Result {
	body, changed, k := e.Body, false, 0
	for _, p := range paths {
		var out []byte
		var ok bool
		if mask != nil {
			out, ok = sdk.Set(scratch[k][:0], body, p, mask)
		} else {
			out, ok = sdk.Delete(scratch[k][:0], body, p)
		}
		scratch[k] = out
		if ok {
			body, changed, k = out, true, 1-k
		}
	}
	if !changed {
		return sdk.Keep()
	}
	return sdk.Replace(body)
}
