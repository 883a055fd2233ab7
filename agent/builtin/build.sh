#!/bin/sh
# Build the built-in WASM skills from their Rust sources (std only, no crates) with
# Debian's rustc and its wasm32-wasi standard library:
#   apt-get install -y rustc libstd-rust-dev-wasm32 lld
# /usr/bin/rustc is used explicitly: a rustup rustc on PATH usually lacks the wasm target.
# The build is deterministic (same source, same compiler: same bytes); the outputs are
# committed so that running Bitterbot never needs Rust.
# Usage: agent/builtin/build.sh [OUTDIR]   (default: next to each source)
set -eu
RUSTC="${RUSTC:-/usr/bin/rustc}"
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-}"
if ! "$RUSTC" --print target-list >/dev/null 2>&1 || [ ! -d /usr/lib/rustlib/wasm32-wasi ]; then
  echo "build.sh: needs Debian's rustc with the wasm32-wasi std:" >&2
  echo "  apt-get install -y rustc libstd-rust-dev-wasm32 lld" >&2
  exit 1
fi
for skill in calculator file-search; do
  dest="${OUT:-$HERE/$skill}/$skill.wasm"
  mkdir -p "$(dirname "$dest")"
  "$RUSTC" --edition 2021 --target wasm32-wasi -C opt-level=s -C strip=symbols \
    -C panic=abort -C lto -C codegen-units=1 --remap-path-prefix "$HERE=." \
    "$HERE/$skill/src/main.rs" -o "$dest"
  echo "built $dest ($(wc -c < "$dest") bytes)"
done
