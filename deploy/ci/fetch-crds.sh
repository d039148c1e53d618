#!/usr/bin/env bash
# The published CustomResourceDefinitions of the kinds the chart renders besides core Kubernetes
# (LeaderWorkerSet, RayCluster, InferencePool, HTTPRoute, KEDA's ScaledObject), fetched through the Go module proxy
# (each project publishes its CRDs in its Go module) into a cache outside the repository, never
# committed. The deploy tests validate the rendered objects against them strictly
# (test/deploy/crd_validate.py). Idempotent: a complete cache for these versions is kept.
set -euo pipefail
CRD_DIR="${SWITCHYARD_CRD_DIR:-$HOME/.cache/switchyard-tools/crds}"
export GOMODCACHE="${SWITCHYARD_GOMODCACHE:-$HOME/.cache/switchyard-tools/gomod}"
export GOFLAGS=-mod=mod
# module@version  path of the CRD inside the module
CRDS=(
  "sigs.k8s.io/lws@v0.8.0 config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
  "github.com/ray-project/kuberay/ray-operator@v1.5.1 config/crd/bases/ray.io_rayclusters.yaml"
  "sigs.k8s.io/gateway-api-inference-extension@v1.6.0 config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"
  "sigs.k8s.io/gateway-api@v1.4.1 config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
  "github.com/kedacore/keda/v2@v2.18.3 config/crd/bases/keda.sh_scaledobjects.yaml"
)
stamp="$(printf '%s\n' "${CRDS[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$CRD_DIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "fetch-crds: go is needed to fetch the CRDs through the Go module proxy" >&2
  exit 1
fi
mkdir -p "$CRD_DIR"
for entry in "${CRDS[@]}"; do
  mod="${entry%% *}"
  file="${entry#* }"
  dir="$(cd /tmp && go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp "$dir/$file" "$CRD_DIR/$(basename "$file")"
  chmod u+w "$CRD_DIR/$(basename "$file")"
  printf '%s %s\n' "$mod" "$file" >>"$CRD_DIR/.sources.tmp"
done
mv "$CRD_DIR/.sources.tmp" "$CRD_DIR/SOURCES"
echo "$stamp" >"$CRD_DIR/.stamp"
echo "fetch-crds: $(ls "$CRD_DIR"/*.yaml | wc -l) CRDs in $CRD_DIR" >&2
