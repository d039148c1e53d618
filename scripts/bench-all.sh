#!/usr/bin/env bash
# Runs the performance benchmarks one after another on a quiet machine and keeps each one's output in
# results/bench-<name>.txt (the figures in docs/benchmarks.md come from these files). About 20 minutes.
# Usage: bash scripts/bench-all.sh [name ...]   (names: engine sim router cache client fleet routing)
set -uo pipefail
cd "$(dirname "$0")/.."
npm run build --silent
mkdir -p results
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(engine sim router cache client fleet routing)
run() {
  local name=$1; shift
  echo "== $name: $* (load: $(cut -d' ' -f1-3 /proc/loadavg))" | tee "results/bench-$name.txt"
  local t0=$SECONDS
  "$@" >>"results/bench-$name.txt" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s" | tee -a "results/bench-$name.txt"
}
for w in "${want[@]}"; do
  case $w in
    engine) run engine node dist/bench/micro/engine-step.js 2000 1000 ;;
    sim) run sim node dist/bench/sim/streams.js --streams 2000 --max-tokens 300 --time-scale 1 ;;
    router) run router node dist/bench/router/overhead.js --duration 4 --policy least-load ;;
    cache) run cache node dist/bench/cacheserver/throughput.js --repeat 3 ;;
    client) run client node dist/bench/client/capacity.js ;;
    fleet) run fleet node dist/bench/fleet/speed.js 3600 16 ;;
    routing) run routing node dist/bench/routing/compare.js ;;
    *) echo "unknown benchmark $w" >&2 ;;
  esac
done
