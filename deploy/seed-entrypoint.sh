#!/bin/sh
# Start one seed of a fixed seed network (deploy/compose.yaml).
#
# Each seed publishes its peer ID in the shared folder $SEED_IDS, waits (up to
# $SEED_WAIT_S seconds) for the IDs of the other seeds, and starts with them as --seed.
# SEEDS lists every seed as name=ip (this seed's own entry is skipped).
set -eu
: "${SEED_NAME:?set SEED_NAME (the name of this seed in SEEDS)}"
: "${SEEDS:?set SEEDS, e.g. seed1=172.28.0.11 seed2=172.28.0.12}"
SEED_IDS="${SEED_IDS:-/seed-ids}"
SEED_PORT="${SEED_PORT:-4001}"
SEED_WAIT_S="${SEED_WAIT_S:-60}"

# Creates the identity in $BITTERBOT_HOME on first start; the same key ever after.
bitterbot id > "$SEED_IDS/$SEED_NAME.id.tmp"
mv "$SEED_IDS/$SEED_NAME.id.tmp" "$SEED_IDS/$SEED_NAME.id"

set --
for entry in $SEEDS; do
  name="${entry%%=*}"
  ip="${entry#*=}"
  [ "$name" = "$SEED_NAME" ] && continue
  waited=0
  while [ ! -s "$SEED_IDS/$name.id" ] && [ "$waited" -lt "$SEED_WAIT_S" ]; do
    sleep 1
    waited=$((waited + 1))
  done
  if [ -s "$SEED_IDS/$name.id" ]; then
    set -- "$@" --seed "/ip4/$ip/tcp/$SEED_PORT/p2p/$(cat "$SEED_IDS/$name.id")"
  else
    echo "seed-entrypoint: no peer ID from $name after ${SEED_WAIT_S}s; starting without it" >&2
  fi
done

exec bitterbot node start --listen "/ip4/0.0.0.0/tcp/$SEED_PORT" "$@"
