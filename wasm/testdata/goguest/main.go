// Command goguest is a multi-behaviour Go test filter; the binding's config
// selects the behaviour, so one build serves many tests.
package main

import (
	"errors"
	"strings"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
)

var (
	mode  string
	sink  [][]byte
	spins int
)

func main() {}

func init() {
	sdk.Configure(func(cfg []byte) error {
		mode, _ = sdk.GetString(cfg, "mode")
		if mode == "reject" {
			return errors.New("mode reject: config refused on purpose")
		}
		return nil
	})
	sdk.Handle(func(e *sdk.Event) sdk.Result {
		switch mode {
		case "panic":
			if strings.HasSuffix(e.DocumentID, "-13") {
				var m map[string]int
				m["boom"] = 1 // recovered by the SDK: error verdict for this event only
			}
		case "spin":
			for {
				spins++
			}
		case "oom":
			for {
				sink = append(sink, make([]byte, 1<<20))
			}
		case "fail":
			return sdk.Fail("refused " + e.DocumentID)
		case "upper":
			return sdk.Replace([]byte(`{"doc":` + string(sdk.Quote(nil, strings.ToUpper(e.DocumentID))) + `}`))
		}
		return sdk.Keep()
	})
}
