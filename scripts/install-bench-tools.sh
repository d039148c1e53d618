#!/usr/bin/env bash
# The load client and the reference proxy the router benchmarks run beside it (Debian packages):
# wrk (HTTP load generator) and nginx-light. Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || [ -x /usr/bin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
