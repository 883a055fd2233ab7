#!/usr/bin/env bash
# Build the local test mint's virtualenv (.venv-mint by default): nutshell, pinned.
# Idempotent: a stamp file records the requirements' hash; nothing is done when it matches.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.venv-mint}
PYTHON=${PYTHON:-python3}
REQ=deploy/cashu/mint-requirements.txt
STAMP=$VENV/.stamp-mint
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/mint" ]; then
  exit 0
fi
echo ">>> building the test mint's virtualenv in $VENV (nutshell, about a minute)"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
test -x "$VENV/bin/mint" || { echo "!!! $VENV/bin/mint missing after install" >&2; exit 1; }
echo "$want" > "$STAMP"
echo ">>> test mint ready: $VENV/bin/mint"
