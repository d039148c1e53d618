#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package, which brings promtool) when it is not on PATH, for
# `switchyard up --monitoring` and the dashboard checks. Idempotent: does nothing when it is there.
# The package starts a system-wide server where systemd runs; `up --monitoring` runs its own, so that
# one is stopped and disabled again.
# Usage: bash scripts/install-prometheus.sh
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-prometheus: run as root or install sudo (needs: apt-get install prometheus)" >&2
    exit 1
  fi
}

if ! command -v apt-get >/dev/null; then
  echo "install-prometheus: no apt-get here; install Prometheus 2.x or 3.x yourself (https://prometheus.io/download/) and put 'prometheus' on PATH" >&2
  exit 1
fi
echo "install-prometheus: installing Debian's prometheus package" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
echo "install-prometheus: $(prometheus --version 2>&1 | head -1)" >&2
