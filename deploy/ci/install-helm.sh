#!/usr/bin/env bash
# helm v3, built from the Go module proxy into a cache outside the repository (helm's release
# downloads are not reachable everywhere the tests run; its module is). Used by install-k8s-tools.sh
# for the deploy tests and by the interop `kubernetes` group, which installs what it needs itself.
# A few minutes to build on 2 cores, so the binary is cached and the build skipped when present; a
# source build reports only "v3.22" as its version, hence the stamp file. Prints the binary's path.
# Usage: bash deploy/ci/install-helm.sh
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
TOOLS_BIN="${SWITCHYARD_TOOLS_BIN:-$HOME/.cache/switchyard-tools/bin}"
mkdir -p "$TOOLS_BIN"

if [ -x "$TOOLS_BIN/helm" ] && [ "$(cat "$TOOLS_BIN/helm.version" 2>/dev/null)" = "$HELM_VERSION" ]; then
  :
elif command -v helm >/dev/null && helm version --short 2>/dev/null | grep -q '^v3\.'; then
  ln -sf "$(command -v helm)" "$TOOLS_BIN/helm"
else
  if ! command -v go >/dev/null; then
    echo "install-helm: go is needed to build helm ${HELM_VERSION}" >&2
    exit 1
  fi
  echo "install-helm: building helm ${HELM_VERSION} (a few minutes)" >&2
  GOFLAGS=-mod=mod GOBIN="$TOOLS_BIN" go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
  echo "$HELM_VERSION" >"$TOOLS_BIN/helm.version"
fi
echo "$TOOLS_BIN/helm"
