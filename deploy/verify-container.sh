#!/usr/bin/env bash
# Build the Bitterbot container image with podman and check that it really works: a node
# started from the image answers on its API and metrics, and the three seeds of
# deploy/compose.yaml find each other. Not part of CI (it builds llama.cpp: ~15-25 minutes
# of CPU on 2 cores the first time; layers are cached after that).
#
#   sudo deploy/verify-container.sh [STEP...]
#
#   STEPS (default: base build run seeds)
#     base       make the FROM image (debian:bookworm-slim) if it is not there: pull it, or,
#                where no registry is reachable, debootstrap a bookworm root and import it
#     build      build bitterbot:latest (with the models) and bitterbot:seed (WITH_MODELS=0)
#     run        start bitterbot:latest as the image's default command; check status + metrics
#     seeds      start seed1..seed3 as compose.yaml describes them (podman-compose if
#                installed, else the same settings by hand); check each seed is connected to
#                the two others
#     arm64      the arm64 base under QEMU (qemu-user-static + binfmt): the node's Python
#                dependencies except llama-cpp-python install as arm64 wheels and
#                `bitterbot node start` runs (llama.cpp itself is not built: hours under QEMU)
#     clean      remove the containers, volumes and network made here
#
# Environment: ARCH (default: this machine's), KEEP=1 leaves containers running,
# HOST_CA=0 to not copy this machine's extra CA certificates into the stand-in base image
# (they are needed where TLS to PyPI passes through an inspecting proxy, as on the machine
# this was first run on). Prints one JSON object per step on stdout; exit status 0 only
# when every step passed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${VERIFY_DIR:-/var/tmp/bitterbot-verify}"
BASE_IMAGE="docker.io/library/debian:bookworm-slim"
HOST_CA="${HOST_CA:-1}"
KEEP="${KEEP:-0}"
NICE=(nice -n 10)
PODMAN=(podman)

log() { echo "verify-container: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc | xargs printf '%.1f'; }

[ "$(id -u)" -eq 0 ] || fail "run as root (rootless podman needs subuid setup this script does not do)"
command -v podman >/dev/null || fail "podman is not installed (apt-get install podman)"
mkdir -p "$WORK"

# make_base ARCH TAG: a minimal bookworm root, as debian:bookworm-slim would be
make_base() {
  local arch="$1" tag="$2" root="$WORK/bookworm-$1"
  command -v debootstrap >/dev/null || fail "no registry and no debootstrap (apt-get install debootstrap)"
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    rm -rf "$root"
    log "debootstrap bookworm ($arch) into $root"
    "${NICE[@]}" debootstrap --arch="$arch" --variant=minbase bookworm "$root" \
      http://deb.debian.org/debian >"$WORK/debootstrap-$arch.log" 2>&1 \
      || fail "debootstrap (see $WORK/debootstrap-$arch.log)"
  fi
  cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  rm -f "$root"/usr/local/share/ca-certificates/*.crt "$root/etc/pip.conf"
  if [ "$HOST_CA" = "1" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    # Installed into the bundle when the build stage installs ca-certificates; pip then
    # trusts the bundle instead of its own copy of certifi.
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
  fi
  tar -C "$root" -c . | podman import -q --arch "$arch" \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
}

step_base() {
  local t0 how
  t0=$(now)
  if podman image exists "$BASE_IMAGE"; then
    how="present"
  elif timeout 60 podman pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    how="pulled"
  else
    make_base "$(podman info --format '{{.Host.Arch}}')" "$BASE_IMAGE"
    how="debootstrap"
  fi
  podman_setup
  printf '{"step": "base", "image": "%s", "how": "%s", "seconds": %s}\n' \
    "$BASE_IMAGE" "$how" "$(elapsed "$t0")"
}

# podman_setup: make `podman run` work here, or say why it cannot. Some machines need:
# runc instead of crun (crun refuses a cgroup v1 + v2 "hybrid" host), and explicit
# rlimits (podman raises NOFILE/NPROC by default, which fails without CAP_SYS_RESOURCE).
podman_setup() {
  podman run --rm "$BASE_IMAGE" true >/dev/null 2>&1 && return 0
  local conf="$WORK/containers.conf" hard
  hard=$(ulimit -Hn)
  {
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$hard:$hard\", \"nproc=4096:4096\"]"
    if [ -d /sys/fs/cgroup/unified ]; then
      command -v runc >/dev/null || fail "crun cannot run on this hybrid-cgroup host; apt-get install runc"
      echo "[engine]"
      echo 'runtime = "runc"'
    fi
  } >"$conf"
  export CONTAINERS_CONF="$conf"
  local err
  err=$(podman run --rm "$BASE_IMAGE" true 2>&1) || fail "podman cannot run a container here: $err"
  log "podman needs $conf here: $(tr '\n' ' ' <"$conf")"
}

image_size_mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f", $1/1e6}'; }

step_build() {
  local t0 full seed
  t0=$(now)
  "${NICE[@]}" podman build -f "$HERE/deploy/Containerfile" -t bitterbot:latest "$HERE" \
    >"$WORK/build-latest.log" 2>&1 || fail "build bitterbot:latest (see $WORK/build-latest.log)"
  full=$(elapsed "$t0")
  t0=$(now)
  "${NICE[@]}" podman build -f "$HERE/deploy/Containerfile" --build-arg WITH_MODELS=0 \
    -t bitterbot:seed "$HERE" >"$WORK/build-seed.log" 2>&1 \
    || fail "build bitterbot:seed (see $WORK/build-seed.log)"
  seed=$(elapsed "$t0")
  printf '{"step": "build", "latest_seconds": %s, "seed_seconds_after_latest": %s, ' "$full" "$seed"
  printf '"latest_mb": %s, "seed_mb": %s}\n' "$(image_size_mb bitterbot:latest)" \
    "$(image_size_mb bitterbot:seed)"
}

# wait_status CONTAINER SECONDS: the node's `status --json` from inside the container
wait_status() {
  local i
  for i in $(seq 1 "$(( $2 * 2 ))"); do
    if podman exec "$1" bitterbot node status --json 2>/dev/null; then return 0; fi
    podman container exists "$1" && [ "$(podman inspect -f '{{.State.Running}}' "$1")" = true ] \
      || { podman logs "$1" >&2 || true; return 1; }
    sleep 0.5
  done
  return 1
}

step_run() {
  local name=bb-verify-node t0 status metrics
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f bb-verify-data >/dev/null 2>&1 || true
  t0=$(now)
  # The image's own ENTRYPOINT and CMD; the API and metrics stay on the container's loopback.
  podman run -d --name "$name" -v bb-verify-data:/data bitterbot:latest >/dev/null
  status=$(wait_status "$name" 60) || fail "the node in $name did not answer (podman logs $name)"
  local up_s
  up_s=$(elapsed "$t0")
  metrics=$(podman exec "$name" python3 -c \
    'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())')
  echo "$metrics" | grep -q '^bitterbot_info{' || fail "no bitterbot_info in /metrics"
  local health
  health=$(podman healthcheck run "$name" >/dev/null 2>&1 && echo true || echo false)
  # The embedded model loads and answers inside the image (llama.cpp built in the image).
  local answer
  answer=$(podman exec "$name" bitterbot ask --json "What is 12 times 12?" 2>&1 | tail -n 40) \
    || fail "bitterbot ask failed in the image: $answer"
  "$HERE/.venv/bin/python" - "$status" "$up_s" "$health" "$answer" \
    "$(podman exec "$name" ps -o rss= -C bitterbot 2>/dev/null | head -n1 || true)" <<'PY'
import json, sys
status, up_s, health, answer, rss = sys.argv[1:6]
s = json.loads(status)
print(json.dumps({
    "step": "run", "api_answered_after_s": float(up_s), "peer_id": s.get("peer_id"),
    "listen_addrs": s.get("listen_addrs"), "healthcheck_ok": health == "true",
    "ask": answer[-300:],
}))
PY
  [ "$KEEP" = "1" ] || { podman rm -f "$name" >/dev/null; podman volume rm -f bb-verify-data >/dev/null; }
}

step_clean() {
  local c
  for c in bb-verify-node seed1 seed2 seed3 deploy_seed1_1 deploy_seed2_1 deploy_seed3_1; do
    podman rm -f "$c" >/dev/null 2>&1 || true
  done
  podman volume ls -q | grep -E '^(bb-verify-|deploy_)' | xargs -r podman volume rm -f >/dev/null
  podman network rm -f bb-verify >/dev/null 2>&1 || true
  echo '{"step": "clean"}'
}

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(base build run seeds)
[ "${STEPS[0]}" = base ] || podman_setup
for s in "${STEPS[@]}"; do
  case "$s" in
    base|build|run|seeds|arm64|clean) "step_$s" ;;
    *) fail "unknown step $s (see --help in the header)" ;;
  esac
done
