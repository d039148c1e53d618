#!/usr/bin/env bash
# Extra tools the tests use (real peers). Each step is idempotent and skips what is present.
set -euo pipefail
# Python side: a reference msgpack + ZMQ subscriber and a protocol-only lm:// client.
if ! python3 -c "import zmq, msgpack" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyzmq msgpack
fi
# redis-server: shared rate-limit counters across router replicas are tested against a real Redis
if ! command -v redis-server >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
# helm (built from the Go module proxy, cached), promtool, kubernetes-validate, hadolint
bash "$(dirname "$0")/../deploy/ci/install-k8s-tools.sh"
# the endpoint picker's test client: Envoy's published ext_proc Go bindings (go-control-plane) and
# grpc-go, from the Go module proxy into a cache outside the repository, built once
bash "$(dirname "$0")/build-epp-client.sh"
# prometheus (Debian's package): `switchyard up --monitoring` and the live dashboard check run a real one
bash "$(dirname "$0")/../scripts/install-prometheus.sh"
