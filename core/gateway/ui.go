package gateway

import (
	"log/slog"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/ui"
)

// uiHandler serves the embedded admin UI under /_/.
func uiHandler(cfg config.Config, log *slog.Logger) fasthttp.RequestHandler {
	if !ui.Built() {
		log.Warn("the admin UI was not built into this binary (run `make ui` before `go build`); /_/ explains how")
	}
	return ui.Handler("/_/")
}
