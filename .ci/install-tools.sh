#!/usr/bin/env bash
# Every tool the tests drive (real peers), installed where missing: `npm test` runs this first, so a
# fresh machine runs the same suite as CI with nothing skipped. Each step is idempotent and skips
# what is present, so once everything is installed a pass takes a few seconds. Installs need
# apt-get (as root or through sudo), pip (.ci/pip-install.sh) and Go (the module proxy) the first time.
set -euo pipefail
HERE="$(dirname "$0")"
# shellcheck source=as-root.sh
. "$HERE/as-root.sh"
# Python packages go to the machine's python3, or to a venv of ours where it is externally managed
# (pip-install.sh): that venv first on PATH here, as npm test puts it for the tests
VENV="${SWITCHYARD_TOOLS_VENV:-$HOME/.cache/switchyard-tools/venv}"
export PATH="$VENV/bin:$PATH"
# Python side: a reference msgpack + ZMQ subscriber and a protocol-only lm:// client.
if ! python3 -c "import zmq, msgpack" 2>/dev/null; then
  bash "$HERE/pip-install.sh" pyzmq msgpack
fi
# redis-server: shared rate-limit counters across router replicas are tested against a real Redis
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
# helm (built from the Go module proxy, cached), promtool, kubernetes-validate, hadolint, the CRDs
# with jsonschema, PyYAML and cel-python; their versions are printed only by a pass that runs alone
SWITCHYARD_TOOLS_VERBOSE="${SWITCHYARD_TOOLS_VERBOSE:-0}" bash "$HERE/../deploy/ci/install-k8s-tools.sh"
# the endpoint picker's test client: Envoy's published ext_proc Go bindings (go-control-plane) and
# grpc-go, from the Go module proxy into a cache outside the repository, built once
bash "$HERE/build-epp-client.sh"
# prometheus (Debian's package): `switchyard up --monitoring` and the live dashboard check run a real one
bash "$HERE/../scripts/install-prometheus.sh"
