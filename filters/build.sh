#!/bin/sh
# Builds every example filter into filters/dist/<name>.wasm (gw/v1 reactor
# modules). Called by the top-level `make filters`; needs only the Go toolchain.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/dist"
for dir in "$here"/examples/*/; do
	name=$(basename "$dir")
	(cd "$dir" && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 \
		go build -buildmode=c-shared -trimpath -o "$here/dist/$name.wasm" .)
	echo "built dist/$name.wasm ($(wc -c <"$here/dist/$name.wasm") bytes)"
done
