#!/usr/bin/env bash
# bench/run.sh: what `make bench` and `make bench-compare` run.
#
#   bench/run.sh               presenced only: build is done by make; start it
#                              on a free UDP port with a temp config (sqlite
#                              store in a temp dir, admin off), run presbench,
#                              print the table, stop the server.
#   bench/run.sh compare       the same, then Kamailio with
#                              bench/kamailio/kamailio.cfg (if installed), and
#                              the two columns with their ratios.
#
# Extra presbench flags go in PRESBENCH_FLAGS (e.g. "-step 3s -workloads publish").
# Every server this script starts is stopped on exit, failure or ^C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-presenced}
TMP=$(mktemp -d /tmp/presbench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	echo "bench: sipp files and server logs kept in $TMP" >&2
}
trap cleanup EXIT INT TERM

go build -o "$TMP/presbench" ./bench/cmd/presbench
free_port() { "$TMP/presbench" -free-port; }

# ---- presenced --------------------------------------------------------------
PORT=$(free_port)
mkdir -p "$TMP/presenced"
cat >"$TMP/presenced/presenced.toml" <<TOML
# written by bench/run.sh
[server]
data_dir = "$TMP/presenced/data"
log_level = "info"
# MEMORY_LIMIT_MB=256 gives the daemon a memory budget, as Kamailio is
# given its shared memory below; none by default: at 256 the collector ran through
# the second half of the ladder (server RATIONALE, "What serving costs").
memory_limit_mb = ${MEMORY_LIMIT_MB:-0}

[[listen]]
transport = "udp"
address = "127.0.0.1:$PORT"

[store]
backend = "sqlite"

[admin]
listen = ""

[limits]
# sipp sends everything from 127.0.0.1: a per-source limit would measure itself.
requests_per_second_per_source = 0

[extension.pa]
path = "$ROOT/extensions/pa/pa.wasm"
trusted = ${TRUSTED:-true}       # as presenced.toml; TRUSTED=false make bench: with termination checks
instances = ${INSTANCES:-2}

[extension.pa.config]
dummy_presence = true
TOML
./bin/presenced -config "$TMP/presenced/presenced.toml" >"$TMP/presenced/presenced.log" 2>&1 &
SRV=$!
PIDS+=("$SRV")
for _ in $(seq 100); do
	grep -q "presenced serving" "$TMP/presenced/presenced.log" && break
	kill -0 "$SRV" 2>/dev/null || { cat "$TMP/presenced/presenced.log" >&2; exit 1; }
	sleep 0.1
done
grep -q "presenced serving" "$TMP/presenced/presenced.log" || { echo "bench: presenced did not start" >&2; cat "$TMP/presenced/presenced.log" >&2; exit 1; }
echo "bench: presenced pid $SRV on udp 127.0.0.1:$PORT, config $TMP/presenced/presenced.toml" >&2
# shellcheck disable=SC2086
"$TMP/presbench" -server "127.0.0.1:$PORT" -pid "$SRV" -name presenced \
	-scenarios bench/sipp -work "$TMP/presenced/sipp" -json "$TMP/presenced.json" ${PRESBENCH_FLAGS:-}
kill "$SRV" 2>/dev/null || true
wait "$SRV" 2>/dev/null || true
if grep -q "level=ERROR" "$TMP/presenced/presenced.log"; then
	echo "bench: presenced logged errors (first 3):" >&2
	grep "level=ERROR" "$TMP/presenced/presenced.log" | head -3 | cut -c1-300 >&2
fi

[ "$MODE" = compare ] || exit 0

# ---- Kamailio ---------------------------------------------------------------
KAM=$(command -v kamailio || true)
[ -n "$KAM" ] || [ ! -x /usr/sbin/kamailio ] || KAM=/usr/sbin/kamailio
if [ -z "$KAM" ]; then
	echo "bench-compare: kamailio is not installed (apt-get install kamailio kamailio-presence-modules); only the presenced column was measured" >&2
	exit 0
fi
KPORT=$(free_port)
mkdir -p "$TMP/kamailio"
# -DD: stay in the foreground, -E: log to stderr, -l: the listen socket.
# -m: shared memory, 4 GB unless KAMAILIO_SHM_MB says otherwise. With
# 1 GB its pool filled during the PUBLISH ladder ("could not allocate
# shared memory from shm pool", 500s) and every later step measured its
# memory, not its speed; it uses 1.3-2.1 GB of it through the ladder.
"$KAM" -f bench/kamailio/kamailio.cfg -DD -E -l "udp:127.0.0.1:$KPORT" \
	-P "$TMP/kamailio/kamailio.pid" -Y "$TMP/kamailio" -m "${KAMAILIO_SHM_MB:-4096}" -M 64 \
	>"$TMP/kamailio/kamailio.log" 2>&1 &
KPID=$!
PIDS+=("$KPID")
for _ in $(seq 100); do
	ss -lun 2>/dev/null | grep -q "127.0.0.1:$KPORT " && break
	kill -0 "$KPID" 2>/dev/null || { tail -20 "$TMP/kamailio/kamailio.log" >&2; exit 1; }
	sleep 0.1
done
sleep 0.5
echo "bench: kamailio pid $KPID on udp 127.0.0.1:$KPORT" >&2
# shellcheck disable=SC2086
"$TMP/presbench" -server "127.0.0.1:$KPORT" -pid "$KPID" -name kamailio \
	-scenarios bench/sipp -work "$TMP/kamailio/sipp" -json "$TMP/kamailio.json" ${PRESBENCH_FLAGS:-} >/dev/null
"$TMP/presbench" -compare "$TMP/presenced.json,$TMP/kamailio.json"
