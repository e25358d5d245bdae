# peat-gateway — the two commands a newcomer needs:
#   make run    build (UI included) and start the gateway on SQLite
#   make test   the whole suite: Go (SQLite, Postgres, NATS, Kafka, wasm), chart, and browser tests

SHELL      := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS    := -s -w -X github.com/defenseunicorns/peat-gateway/core/gateway.Version=$(VERSION)
BIN        := bin/peat-gateway
BIND       ?= 127.0.0.1:8080
DATA_DIR   ?= ./data

.PHONY: all build run ui filters test test-go test-ui test-chart vet bench loadtest clean

all: build

## build: the binary with the admin UI embedded
build: ui
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/peat-gateway

## ui: build the Svelte admin UI into ui/dist (embedded by go build)
ui: ui/node_modules/.installed
	cd ui && npm run build --silent

ui/node_modules/.installed: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	touch $@

## filters: build the example wasm filters into filters/dist
filters:
	bash filters/build.sh

## run: start the gateway with SQLite in $(DATA_DIR), ready on the printed URL
run: build
	PEAT_GATEWAY_BIND=$${PEAT_GATEWAY_BIND:-$(BIND)} PEAT_GATEWAY_DATA_DIR=$${PEAT_GATEWAY_DATA_DIR:-$(DATA_DIR)} ./$(BIN)

vet:
	@test -z "$$(gofmt -l cmd core wasm filters ui/*.go)" || { echo "gofmt needed:"; gofmt -l cmd core wasm filters ui/*.go; exit 1; }
	$(GO) vet ./...

## test: everything CI runs
test: vet test-go test-chart test-ui

# Go tests, with one throwaway Postgres cluster shared by every package
# (started unless PEAT_TEST_DATABASE_URL is already set). A skipped test fails the run.
test-go: filters
	bash scripts/with-postgres.sh bash scripts/test-go.sh

## test-chart: render the Helm chart and validate zarf.yaml and the UDS bundle
test-chart:
	cd chart && $(GO) test -count=1 ./...

## test-ui: browser end-to-end test of the embedded UI against the real binary
test-ui: build
	cd ui && npm test

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./core/... ./wasm/...

## loadtest: the gateway's own load generator against an in-process gateway
loadtest: build
	./$(BIN) loadtest --scenario mixed --duration 10s --concurrency 32

clean:
	rm -rf bin data filters/dist .test-go.log
