#!/usr/bin/env bash
# Builds the real etcd and kube-apiserver that the interop `kubernetes` group runs, from the Go module
# proxy, into the peers cache (never into the repository): their release binaries cannot be downloaded
# where the interop runs, but both build from module sources. Pinned versions; each binary is built once
# and reused (a marker names what was built). `go install` refuses k8s.io/kubernetes (its go.mod has
# replace directives for the staging modules), so each is built from a tiny wrapper module made here:
# etcd's is five lines calling etcdmain.Main; kube-apiserver's requires k8s.io/kubernetes and replaces each
# k8s.io/* staging module with the release's matching v0.N tag, as Kubernetes' own go.mod does locally.
# Usage: build-kube.sh <out dir>   (prints the two binary paths on success)
set -euo pipefail

ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.34.4
# the staging modules' tags follow the release: v1.34.4 -> v0.34.4
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

OUT="${1:?usage: build-kube.sh <out dir>}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

build_etcd() {
  local bin="$OUT/etcd-$ETCD_VERSION/etcd"
  [[ -x "$bin" && -f "$bin.built" ]] && { echo "$bin"; return; }
  local src="$OUT/etcd-$ETCD_VERSION/src"
  mkdir -p "$src"
  cat >"$src/go.mod" <<MOD
module switchyard.local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$src/main.go" <<'GO'
// etcd's own entry point, built from its module so the interop needs no release download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  local t0=$SECONDS
  (cd "$src" && go mod tidy >&2 && go build -o "$bin" . >&2)
  echo "etcd $ETCD_VERSION built in $((SECONDS - t0)) s ($(du -h "$bin" | cut -f1))" >&2
  echo "$ETCD_VERSION" >"$bin.built"
  echo "$bin"
}

build_apiserver() {
  local bin="$OUT/kubernetes-$KUBE_VERSION/kube-apiserver"
  # the version a release build stamps in (kubectl and helm read it from /version; helm checks the
  # chart's kubeVersion against it)
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local stamp="$KUBE_VERSION $ldflags"
  [[ -x "$bin" && "$(cat "$bin.built" 2>/dev/null)" == "$stamp" ]] && { echo "$bin"; return; }
  local src="$OUT/kubernetes-$KUBE_VERSION/src"
  mkdir -p "$src"
  local staging=(
    api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
    kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller
  )
  {
    echo "module switchyard.local/kube-apiserver"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
  } >"$src/go.mod"
  cat >"$src/tools.go" <<'GO'
//go:build tools

// Keeps k8s.io/kubernetes/cmd/kube-apiserver's packages in this module's graph for `go mod tidy`.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  local t0=$SECONDS
  (cd "$src" && go mod tidy >&2 && go build -ldflags "$ldflags" -o "$bin" k8s.io/kubernetes/cmd/kube-apiserver >&2)
  echo "kube-apiserver $KUBE_VERSION built in $((SECONDS - t0)) s ($(du -h "$bin" | cut -f1))" >&2
  echo "$stamp" >"$bin.built"
  echo "$bin"
}

build_etcd
build_apiserver
