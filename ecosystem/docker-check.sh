#!/usr/bin/env bash
# Builds ecosystem/Dockerfile and runs the image for real, with no image
# registry: a docker daemon of its own (its own data, socket and bridge, all
# in a temporary folder, removed at the end) and a debian:bookworm-slim
# base made by debootstrap from a Debian mirror. Then checks what the
# Dockerfile promises: `pm runtime` starts the demo's apps, --health answers
# 200 once they are online, Docker's HEALTHCHECK turns healthy, `docker
# stop` ends it with exit code 0, stdout is --json lines, apps ending on
# their own give exit code 1 (one errored) or 2 (none left), and the command
# `pm export --keep-pm` writes runs in the image.
#
#   sudo ecosystem/docker-check.sh          (takes minutes; not part of make test)
#
# Needs root, dockerd and the docker client, debootstrap (installed with
# apt-get when missing), curl, python3, ip, and a reachable Debian mirror.
#   MIRROR=URL      the mirror (default: the first bookworm one of
#                   /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   BASE_TAR=FILE   the base's tarball: imported when it exists, else
#                   written after debootstrap (saves ~2 minutes next time)
#   BRIDGE_IP=A/N   the bridge's address (default 10.219.19.1/24; refused
#                   when a route of this host already covers it)
#   KEEP=1          keep the temporary folder (logs, the daemon's data)
# Prints one line per check and "docker-check: OK" or "docker-check: FAILED";
# exits 0 or 1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BRIDGE_IP=${BRIDGE_IP:-10.219.19.1/24}
IMAGE=pm-demo
FAILED=0
CHECKS=0

say() { printf 'docker-check: %s\n' "$*"; }
die() { say "FAILED: $*"; exit 1; }
pass() { CHECKS=$((CHECKS + 1)); printf '  ok    %s\n' "$*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILED=$((FAILED + 1)); printf '  FAIL  %s\n' "$*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# Polls a command until it succeeds or SECONDS pass: wait_for SECONDS CMD...
wait_for() {
  local until=$((SECONDS + $1)); shift
  while ! "$@" 2>/dev/null; do
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 0.5
  done
}

[ "$(id -u)" = 0 ] || die "run as root (dockerd, debootstrap and a bridge need it)"
for t in docker dockerd curl python3 ip; do
  command -v "$t" >/dev/null || die "$t is missing"
done
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } \
    || die "cannot install debootstrap"
fi

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^deb / && / bookworm( |$)/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }
           /^URIs:/ { uri = $2 } /^Suites:.* bookworm( |$)/ && uri ~ /^https?:.*\/debian\/?$/ { print uri; exit }' | head -1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
MIRROR=${MIRROR%/}

# The bridge's subnet must be free on this host.
ADDR=${BRIDGE_IP%/*}
if ip -4 route show match "$ADDR" | grep -qv '^default'; then
  die "$BRIDGE_IP overlaps a route of this host (ip route show match $ADDR); set BRIDGE_IP"
fi

WORK=$(mktemp -d /tmp/pm-docker-check.XXXXXX)
chmod 700 "$WORK"
BR=pmchk$$
BR=${BR:0:15}
DPID=
export DOCKER_HOST=unix://$WORK/docker.sock

cleanup() {
  local rc=$?
  set +e
  if [ -n "$DPID" ]; then
    docker rm -f pm-check-run pm-check-errored pm-check-ended pm-check-keep >/dev/null 2>&1
    kill -TERM "$DPID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DPID" 2>/dev/null && { say "dockerd $DPID did not stop: SIGKILL"; kill -KILL "$DPID"; }
    wait "$DPID" 2>/dev/null
  fi
  # whatever dockerd or debootstrap left mounted under the folder, deepest first
  findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | while read -r m; do umount -l "$m"; done
  ip link show "$BR" >/dev/null 2>&1 && ip link del "$BR"
  if [ "${KEEP:-}" = 1 ]; then
    say "kept $WORK"
  elif [ "$rc" != 0 ]; then
    rm -rf "${WORK:?}/data" "$WORK/exec" "$WORK/rootfs" "$WORK/base.tar"
    say "logs kept in $WORK"
  else
    rm -rf "${WORK:?}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- a daemon of our own: its own bridge (so -p works as the README says),
# no iptables rules, no ip_forward change, nothing outside $WORK
ip link add "$BR" type bridge
ip addr add "$BRIDGE_IP" dev "$BR"
ip link set "$BR" up
echo '{}' >"$WORK/daemon.json"
say "starting dockerd (log: $WORK/dockerd.log)"
dockerd --config-file "$WORK/daemon.json" --data-root "$WORK/data" --exec-root "$WORK/exec" \
  --pidfile "$WORK/dockerd.pid" --host "$DOCKER_HOST" --storage-driver vfs \
  --bridge "$BR" --iptables=false --ip-forward=false >"$WORK/dockerd.log" 2>&1 &
DPID=$!
wait_for 60 docker info >/dev/null || { tail -5 "$WORK/dockerd.log"; die "dockerd did not start (see above)"; }

# --- debian:bookworm-slim without a registry
if [ -n "${BASE_TAR:-}" ] && [ -s "$BASE_TAR" ]; then
  say "importing $BASE_TAR as debian:bookworm-slim"
else
  say "debootstrap bookworm minbase from $MIRROR (log: $WORK/debootstrap.log)"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -5 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  # the official image's sources: the release, its updates and security
  # (security: when the mirror has a -security sibling)
  rm -f "$WORK/rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$MIRROR"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if curl -fsI -o /dev/null --max-time 20 "$MIRROR-security/dists/bookworm-security/InRelease"; then
      printf '\nTypes: deb\nURIs: %s-security\nSuites: bookworm-security\nComponents: main\n' "$MIRROR"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$WORK/rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  BASE_TAR=${BASE_TAR:-$WORK/base.tar}
  tar -C "$WORK/rootfs" -cf "$BASE_TAR" .
  rm -rf "${WORK:?}/rootfs"
fi
docker import "$BASE_TAR" debian:bookworm-slim >/dev/null || die "docker import failed"

# --- the build, as the Dockerfile's header says (host network: the daemon
# has no NAT, the mirror is reached from the host's network)
say "docker build -f ecosystem/Dockerfile -t $IMAGE . (log: $WORK/build.log)"
if ! (cd "$ROOT" && docker build --network host -f ecosystem/Dockerfile -t "$IMAGE" .) >"$WORK/build.log" 2>&1; then
  tail -20 "$WORK/build.log"
  die "docker build failed"
fi
pass "docker build"

# --- the run, as the Dockerfile's header says: docker run -p 9615:9615 pm-demo
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HEALTH=http://127.0.0.1:$PORT/
docker run -d --name pm-check-run -p "127.0.0.1:$PORT:9615" "$IMAGE" >/dev/null || die "docker run failed"

all_online() {
  curl -fsS "$HEALTH" | python3 -c '
import json, sys
b = json.load(sys.stdin)
names = sorted(a["name"] for a in b["apps"] if a["status"] == "online")
sys.exit(0 if b["status"] == "ok" and names == ["ticker", "web", "worker"] else 1)'
}
check "--health answers 200 with ticker, web and worker online ($HEALTH)" wait_for 60 all_online
web_answers() { [ "$(docker exec pm-check-run curl -fsS http://127.0.0.1:8000/)" = "hello from pm" ]; }
check "the web app answers inside the container" wait_for 30 web_answers
healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' pm-check-run)" = healthy ]; }
check "Docker's HEALTHCHECK says healthy" wait_for 60 healthy
ls_online() { [ "$(docker exec pm-check-run pm jlist | python3 -c 'import json,sys; print(sum(p["pm2_env"]["status"] == "online" for p in json.load(sys.stdin)))')" = 3 ]; }
check "pm jlist inside the container: 3 online" ls_online

start=$SECONDS
docker stop -t 20 pm-check-run >/dev/null
took=$((SECONDS - start))
code=$(docker inspect -f '{{.State.ExitCode}}' pm-check-run)
check "docker stop: exit code 0 (got $code, in ${took}s)" [ "$code" = 0 ]
check "docker stop: stopped by SIGTERM, not killed at the timeout" [ "$took" -lt 20 ]

docker logs pm-check-run >"$WORK/stdout.log" 2>"$WORK/stderr.log"
json_lines() {
  python3 - "$WORK/stdout.log" <<'EOF'
import json, sys
events, out = set(), set()
lines = open(sys.argv[1]).read().splitlines()
for line in lines:
    j = json.loads(line)  # every stdout line is a JSON object
    if j["type"] == "process_event":
        events.add((j["app_name"], j["status"]))
    elif j["type"] == "out":
        out.add(j["app_name"])
apps = {"ticker", "web", "worker"}
need = {(a, s) for a in apps for s in ("start", "online", "stop")}
missing = need - events
if missing or out != apps or not lines:
    print("    missing events:", sorted(missing), "apps with out lines:", sorted(out))
    sys.exit(1)
EOF
}
check "docker logs: every stdout line is JSON; start/online/stop events and out lines of each app" json_lines

# --- the container's exit code when apps end on their own: 1 when one ends
# errored (its restarts spent), 2 when none is left running
exit_code_of() { # NAME APP-ATTRIBUTES: runs one app in the image, prints the container's exit code
  docker run --name "$1" --entrypoint sh "$IMAGE" -c \
    "printf '%s\\n' 'return { apps = { { name = \"ends\", script = \"sh\", args = { \"-c\", \"exit 3\" }, $2 } } }' >/tmp/e.lua && exec pm runtime /tmp/e.lua --json" \
    >"$WORK/$1.log" 2>&1 || true
  docker inspect -f '{{.State.ExitCode}}' "$1"
}
code=$(exit_code_of pm-check-errored "max_restarts = 2")
check "an app ending errored (max_restarts spent): the container exits 1 (got $code)" [ "$code" = 1 ]
code=$(exit_code_of pm-check-ended "autorestart = false")
check "no app left running (autorestart = false): the container exits 2 (got $code)" [ "$code" = 2 ]

# --- what `pm export --keep-pm --image pm-demo` writes runs in the image
docker run --rm --entrypoint pm "$IMAGE" export /app/ecosystem.lua --to kubernetes --keep-pm --image "$IMAGE" \
  >"$WORK/k8s.yaml" 2>/dev/null || true
mapfile -t CMD < <(awk '/^# ---- web.yaml/ { f = 1 } f && /^        command:/ { c = 1; next }
  c && /^        - / { sub(/^        - /, ""); gsub(/^"|"$/, ""); print; next } c { exit }' "$WORK/k8s.yaml")
if [ "${#CMD[@]}" -ge 3 ] && [ "${CMD[0]}" = pm ]; then
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  HEALTH=http://127.0.0.1:$PORT/
  docker run -d --name pm-check-keep -p "127.0.0.1:$PORT:9615" --entrypoint "${CMD[0]}" "$IMAGE" "${CMD[@]:1}" >/dev/null
  web_only() {
    curl -fsS "$HEALTH" | python3 -c '
import json, sys
b = json.load(sys.stdin)
sys.exit(0 if b["status"] == "ok" and [a["name"] for a in b["apps"]] == ["web"] else 1)'
  }
  check "pm export --keep-pm's command for web (${CMD[*]}): health 200, only web" wait_for 60 web_only
  docker stop -t 20 pm-check-keep >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' pm-check-keep)
  check "  and docker stop: exit code 0 (got $code)" [ "$code" = 0 ]
else
  fail "pm export --keep-pm: no command for web in its output ($WORK/k8s.yaml)"
fi

if [ "$FAILED" = 0 ]; then
  say "OK ($CHECKS checks; image $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
else
  say "FAILED ($FAILED of $CHECKS checks; logs in $WORK)"
  exit 1
fi
