#!/usr/bin/env bash
# Fetches the full traces behind bench/autoscale/traces (not committed: tens to hundreds of MB) into
# DIR (default: bench/autoscale/traces/full) and prints their sha256. Needs network access and git-lfs
# for BurstGPT.
set -euo pipefail
dir="${1:-$(dirname "$0")/full}"
mkdir -p "$dir"
azure=https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data
for f in AzureLLMInferenceTrace_conv.csv AzureLLMInferenceTrace_code.csv; do
  curl -fsSL -o "$dir/$f" "$azure/$f"
done
# BurstGPT's CSVs are Git LFS objects: clone with git-lfs, or take a release asset
if command -v git-lfs >/dev/null 2>&1; then
  rm -rf "$dir/BurstGPT"
  git clone --depth 1 https://github.com/HPMLL/BurstGPT "$dir/BurstGPT"
  (cd "$dir/BurstGPT" && git lfs pull --include "data/*.csv")
else
  echo "git-lfs not found: BurstGPT skipped (https://github.com/HPMLL/BurstGPT/releases has the CSVs)" >&2
fi
sha256sum "$dir"/*.csv "$dir"/BurstGPT/data/*.csv 2>/dev/null || true
