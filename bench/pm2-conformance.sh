#!/usr/bin/env bash
# PM2's own end-to-end suite (the scripts its test/e2e.sh lists) run against
# pm, and against PM2 itself for comparison. Not part of `make test`: the
# suite is PM2's (AGPL), fetched by whoever runs this; nothing of it is kept
# in this repository, only this runner, the skip list beside it and the
# results (bench/PM2-CONFORMANCE.md).
#
#   make pm2-conformance PM2_SRC=<a PM2 checkout> [PM2_NPM=<folder>] \
#        [RUN="pm pm2"] [ONLY="cli/reload.sh ..."] [TIMEOUT=180]
#
# PM2_SRC  a checkout of github.com/Unitech/pm2 (its test/ and fixtures).
# PM2_NPM  a folder where `npm install pm2` was run: the PM2 column runs its
#          node_modules/pm2/bin/pm2 (and fixtures that require PM2's modules
#          find them there). Without it only the pm column runs.
# RUN  which columns to run (default: pm, and pm2 when PM2_NPM is set).
# ONLY     scripts to run (paths under test/e2e/), default every listed one.
# TIMEOUT  seconds one script may take (default 180; infinite-loop.sh, which
#          sleeps 200 s, at least 480).
# PM       the pm binary (default: this tree's bin/pm).
# ALLOW_SYSTEM 1: run misc/startup.sh as root too (it writes init scripts
#          into /etc and enables them; PM2's are left behind).
# KEEP     1: keep each copy of the checkout (seat.*) beside its log.
# OUT      where logs and results go (default: a new folder under $TMPDIR,
#          under obj/ with ISOLATE).
# PARALLEL 1 (with ISOLATE=1 and RUN="pm pm2"): the columns side by side,
#          each in namespaces of its own.
# ISOLATE  1: run in namespaces of its own (root): a private /tmp (the
#          scripts all write /tmp/tmp_out.txt) and network (their fixed
#          ports), so that other work on the machine and this run do not
#          meet. Scripts that need the internet (modules/*) fail in it.
#
# Each script runs in a fresh copy of the checkout (scripts write into their
# fixtures) whose bin/pm2 is a wrapper: for pm, `PM_HOME=$PM2_HOME exec pm`;
# for PM2, PM2's own bin. Each gets a fresh HOME and PM2_HOME, its own
# process group (what it leaves running, `pm2 logs` followers, is ended with
# it), and afterwards its daemon is stopped: `pm2 kill`, then the pid in its
# home's pid file. One line per script, then `N passed, N failed, N skipped`
# per column. Scripts listed in bench/pm2-conformance.skip are not run for pm.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# PARALLEL=1 with ISOLATE=1: each column in a run (and namespaces) of its
# own, at the same time, into the same OUT; then the table of both.
if [ "${PARALLEL:-}" = 1 ] && [ "${ISOLATE:-}" = 1 ] && [ -z "${PM2C_INSIDE:-}" ] && [ -n "${RUN:-}" ]; then
  OUT=${OUT:-$root/obj/pm2-conformance.$$}
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
  : > "$OUT/totals.tsv"
  for col in $RUN; do
    RUN=$col PARALLEL= OUT=$OUT PM2C_APPEND=1 bash "$0" > "$OUT/$col.out" 2>&1 &
  done
  wait
  cat "$OUT"/*.out
  RUN= PARALLEL= ISOLATE= OUT=$OUT PM2C_TABLE_ONLY=1 exec bash "$0"
fi
if [ "${ISOLATE:-}" = 1 ] && [ -z "${PM2C_INSIDE:-}" ]; then
  OUT=${OUT:-$root/obj/pm2-conformance.$$}
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
  case $OUT in /tmp/*) echo "pm2-conformance: with ISOLATE, OUT must be outside /tmp" >&2; exit 2 ;; esac
  export OUT PM2C_INSIDE=1
  exec unshare -mn --propagation private bash -c 'mount -t tmpfs -o mode=1777 tmpfs /tmp && ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
: "${PM2_SRC:?PM2_SRC must name a PM2 checkout (github.com/Unitech/pm2)}"
PM2_SRC=$(cd "$PM2_SRC" && pwd) || exit 2
[ -f "$PM2_SRC/test/e2e.sh" ] || { echo "pm2-conformance: $PM2_SRC/test/e2e.sh not found" >&2; exit 2; }
PM=${PM:-$root/bin/pm}
[ -x "$PM" ] || { echo "pm2-conformance: $PM is not built (make build)" >&2; exit 2; }
PM=$(cd "$(dirname "$PM")" && pwd)/$(basename "$PM")
PM2_NPM=${PM2_NPM:-}
if [ -n "$PM2_NPM" ]; then
  PM2_NPM=$(cd "$PM2_NPM" && pwd) || exit 2
  [ -f "$PM2_NPM/node_modules/pm2/bin/pm2" ] || { echo "pm2-conformance: no node_modules/pm2 in $PM2_NPM" >&2; exit 2; }
fi
RUN=${RUN:-pm${PM2_NPM:+ pm2}}
TIMEOUT=${TIMEOUT:-180}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/pm2-conformance.XXXXXX")}
mkdir -p "$OUT"
skipfile=$here/pm2-conformance.skip

# The scripts e2e.sh runs, in its order (commented-out lines are not run by
# PM2 either and are not listed).
scripts=$(sed -n 's|^[[:space:]]*runTest \./test/e2e/\([^[:space:]]*\.sh\).*|\1|p' "$PM2_SRC/test/e2e.sh")
[ -n "${ONLY:-}" ] && scripts=$ONLY

skip_reason() {
  [ -f "$skipfile" ] || return 1
  awk -v s="$1" '$1 == s { $1 = ""; sub(/^ +/, ""); print; found = 1 } END { exit !found }' "$skipfile"
}

# The daemon a script's home holds, stopped: asked first, then by its pid.
stop_daemon() {
  local col=$1 seat=$2 home=$3 pidf pid
  timeout -k 2 20 env HOME="$home" PM2_HOME="$home/.pm2" "$seat/bin/pm2" kill >/dev/null 2>&1
  for pidf in "$home/.pm2/pm2.pid" "$home/.pm2/pm.pid"; do
    [ -f "$pidf" ] || continue
    pid=$(tr -dc 0-9 < "$pidf")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # a script that removed its pid file (modules/*): the processes whose
  # environment names this script's own home
  local e
  for e in $(grep -lzxF "PM2_HOME=$home/.pm2" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${e#/proc/}; pid=${pid%/environ}
    [ "$pid" != $$ ] && kill -KILL "$pid" 2>/dev/null
  done
}

run_column() {
  local col=$1 s name seat home log reason start rc t why limit
  local pass=0 fail=0 skip=0
  local results=$OUT/$col.tsv
  : > "$results"
  echo "== $col"
  for s in $scripts; do
    name=${s//\//_}
    # (startup.sh, run as root, writes init scripts into /etc and enables
    # them: PM2's left /etc/init.d/pm2---hp and its rc.d links behind)
    if [ "$s" = misc/startup.sh ] && [ "$(id -u)" = 0 ] && [ "${ALLOW_SYSTEM:-}" != 1 ]; then
      printf 'SKIP  %-42s %s\n' "$s" "writes init scripts into /etc as root (ALLOW_SYSTEM=1 runs it)"
      printf '%s\tskip\t0\t%s\n' "$s" "writes init scripts into /etc as root (ALLOW_SYSTEM=1 runs it)" >> "$results"
      skip=$((skip + 1))
      continue
    fi
    if [ "$col" = pm ] && reason=$(skip_reason "$s"); then
      printf 'SKIP  %-42s %s\n' "$s" "$reason"
      printf '%s\tskip\t0\t%s\n' "$s" "$reason" >> "$results"
      skip=$((skip + 1))
      continue
    fi
    seat=$OUT/$col/seat.$name
    home=$OUT/$col/home.$name
    log=$OUT/$col/$name.log
    rm -rf "$seat" "$home"
    mkdir -p "$seat" "$home/.pm2"
    chmod 700 "$home" "$home/.pm2"
    (cd "$PM2_SRC" && tar --exclude=./node_modules --exclude=./.git -cf - .) | (cd "$seat" && tar -xf -)
    # as a checkout made with umask 022 is (pm, root, refuses an ecosystem
    # file in a folder others may write)
    chmod -R go-w "$seat"
    rm -f "$seat/bin/pm2"
    if [ "$col" = pm ]; then
      printf '#!/bin/sh\nPM_HOME=$PM2_HOME exec %s "$@"\n' "$PM" > "$seat/bin/pm2"
    else
      printf '#!/bin/sh\nexec node %s "$@"\n' "$PM2_NPM/node_modules/pm2/bin/pm2" > "$seat/bin/pm2"
    fi
    chmod 755 "$seat/bin/pm2"
    [ -n "$PM2_NPM" ] && ln -s "$PM2_NPM/node_modules" "$seat/node_modules"
    # infinite-loop.sh sleeps 200 s in a row, then restarts apps for more
    limit=$TIMEOUT
    case $s in internals/infinite-loop.sh) [ "$limit" -lt 480 ] && limit=480 ;; esac
    start=$(date +%s)
    # setsid is exec'd by the subshell: its pid ($!) is the script's
    # process group, ended afterwards with whatever the script left in it
    (cd "$seat" && HOME=$home PM2_HOME=$home/.pm2 PM2_SILENT=true \
      exec setsid timeout -k 5 "$limit" bash "./test/e2e/$s" < /dev/null > "$log" 2>&1) &
    local bg=$!
    wait "$bg"; rc=$?
    kill -KILL -- "-$bg" 2>/dev/null
    stop_daemon "$col" "$seat" "$home"
    t=$(( $(date +%s) - start ))
    if [ "$rc" = 0 ]; then
      printf 'PASS  %-42s %3ss\n' "$s" "$t"
      printf '%s\tpass\t%s\t\n' "$s" "$t" >> "$results"
      pass=$((pass + 1))
    else
      if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then why="timed out after ${limit}s"
      else why=$(grep -a '✘' "$log" | head -1 | sed 's/^#* *✘ *//'); [ -n "$why" ] || why="exit $rc: $(tail -1 "$log" | cut -c1-100)"
      fi
      printf 'FAIL  %-42s %3ss  %s\n' "$s" "$t" "$why"
      printf '%s\tfail\t%s\t%s\n' "$s" "$t" "$why" >> "$results"
      fail=$((fail + 1))
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$seat"
  done
  echo "$col: $pass passed, $fail failed, $skip skipped"
  echo "$col	$pass	$fail	$skip" >> "$OUT/totals.tsv"
}

[ -n "${PM2C_APPEND:-}" ] || [ -n "${PM2C_TABLE_ONLY:-}" ] || : > "$OUT/totals.tsv"
[ -n "${PM2C_TABLE_ONLY:-}" ] && RUN=
for col in $RUN; do
  case $col in
    pm) ;;
    pm2) [ -n "$PM2_NPM" ] || { echo "pm2-conformance: the pm2 column needs PM2_NPM" >&2; exit 2; } ;;
    *) echo "pm2-conformance: unknown column $col (pm, pm2)" >&2; exit 2 ;;
  esac
  run_column "$col"
done
# One markdown row per script for bench/PM2-CONFORMANCE.md: pm's result,
# PM2's, and the skip's reason or what failed first.
table() {
  local s pmr pm2r why
  echo "| script | pm | PM2 | note |"
  echo "|---|---|---|---|"
  for s in $scripts; do
    pmr=$(awk -F'\t' -v s="$s" '$1 == s { print $2 }' "$OUT/pm.tsv" 2>/dev/null)
    pm2r=$(awk -F'\t' -v s="$s" '$1 == s { print $2 }' "$OUT/pm2.tsv" 2>/dev/null)
    why=$(awk -F'\t' -v s="$s" '$1 == s && $2 != "pass" { print $4 }' "$OUT/pm.tsv" 2>/dev/null)
    echo "| $s | ${pmr:--} | ${pm2r:--} | ${why//|/\\|} |"
  done
}
[ -n "${PM2C_APPEND:-}" ] && exit 0
table > "$OUT/table.md"
echo "logs and results: $OUT (table.md: the rows of bench/PM2-CONFORMANCE.md)"
