#!/usr/bin/env bash
# pip install of the Python packages the tests drive (the install scripts call it), where pip may put
# them: the machine's python3, or, where its distribution marks that one externally managed (PEP 668,
# as Debian 12's own python3), a venv in the tools cache that sees the system's packages too.
# `npm test` puts that venv's bin first on PATH (scripts/test.mjs), so `python3` and the tools' commands
# are the venv's there. Usage: bash .ci/pip-install.sh PACKAGE...
set -euo pipefail
VENV="${SWITCHYARD_TOOLS_VENV:-$HOME/.cache/switchyard-tools/venv}"
# shellcheck source=as-root.sh
. "$(dirname "$0")/as-root.sh"
py=python3
if [ -x "$VENV/bin/python3" ]; then
  py="$VENV/bin/python3"
elif python3 -c 'import os, sys, sysconfig
sys.exit(not (sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))'; then
  # Debian leaves venv's pip out of python3 itself
  if ! python3 -m venv --system-site-packages "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv --system-site-packages "$VENV"
  fi
  py="$VENV/bin/python3"
  echo "pip-install: python3 is externally managed here (PEP 668); the test tools' packages go to $VENV" >&2
fi
"$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"
