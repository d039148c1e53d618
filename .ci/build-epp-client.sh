#!/usr/bin/env bash
# Builds switchyard-epp-client (test/epp/client: Envoy's published ext_proc Go bindings from
# github.com/envoyproxy/go-control-plane, and grpc-go) into the tools cache, with its modules in a
# module cache outside the repository, and stamps it with the hash of its sources. Idempotent: an
# up-to-date binary is kept. Once the module cache is filled, it builds offline.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/test/epp/client"
TOOLS_BIN="${SWITCHYARD_TOOLS_BIN:-$HOME/.cache/switchyard-tools/bin}"
export GOMODCACHE="${SWITCHYARD_GOMODCACHE:-$HOME/.cache/switchyard-tools/gomod}"
export GOFLAGS=-mod=mod
mkdir -p "$TOOLS_BIN" "$GOMODCACHE"
want="$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -d' ' -f1)"
bin="$TOOLS_BIN/switchyard-epp-client"
if [ -x "$bin" ] && [ "$(cat "$bin.sum" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "build-epp-client: go is needed to build the ext_proc test client" >&2
  exit 1
fi
echo "build-epp-client: building switchyard-epp-client (about a minute the first time)" >&2
# offline first (the module cache may be full already), then through the module proxy
(cd "$SRC" && GOPROXY=off go build -o "$bin" . 2>/dev/null) || (cd "$SRC" && go build -o "$bin" .)
echo "$want" >"$bin.sum"
