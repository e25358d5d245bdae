package gateway

import (
	"log/slog"
	"os"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/ui"
)

// uiHandler serves the admin UI under /_/: the embedded build, or the one in
// PEAT_UI_DIR when set.
func uiHandler(cfg config.Config, log *slog.Logger) fasthttp.RequestHandler {
	if cfg.UIDir != "" {
		log.Info("serving the admin UI from PEAT_UI_DIR", "dir", cfg.UIDir)
		return ui.HandlerFS("/_/", os.DirFS(cfg.UIDir))
	}
	if !ui.Built() {
		log.Warn("the admin UI was not built into this binary (run `make ui` before `go build`); /_/ explains how")
	}
	return ui.Handler("/_/")
}
