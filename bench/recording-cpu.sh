#!/usr/bin/env bash
# What a recording adds to the server's CPU in a city meeting, measured on
# the real binary: a synthetic hub (q/h/f and Opus) and ROOMS synthetic
# rooms (cmd/roomsim --steady), one room on the floor; the server
# process's CPU time (utime+stime from /proc/PID/stat) over WINDOW-second
# windows, alternately without and with a recording (started and stopped
# through the API as the chair, POST/DELETE /api/conferences/c1/recording;
# the minutes render each stop queues is cancelled at once, so ffmpeg does
# not load the next windows). Prints every window and the medians.
#
#   bench/recording-cpu.sh                   # 116 rooms, 4 pairs of 20 s windows
#   ROOMS=10 PAIRS=3 bench/recording-cpu.sh
#
# Settings (environment): ROOMS (116), PAIRS (4), WINDOW (20 s), WARMUP
# (30 s before the first window), SETTLE (2 s after each start or stop,
# outside the windows), SERVER_CPUS (0) and GEN_CPUS (1): taskset lists
# for the server and for roomsim, FLOOR (commune-001: the room given the
# floor; empty: none), KEEP=1 keeps the work directory (logs, the
# recording). Run from the repository's root; needs go, curl, jq, taskset.
set -euo pipefail

ROOMS=${ROOMS:-116}
PAIRS=${PAIRS:-4}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-30}
SETTLE=${SETTLE:-2}
SERVER_CPUS=${SERVER_CPUS:-0}
GEN_CPUS=${GEN_CPUS:-1}
FLOOR=${FLOOR-commune-001}

work=$(mktemp -d /tmp/recording-cpu.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = 1 ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "recording-cpu.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

go build -o "$work/citybridge" ./cmd/citybridge
go build -o "$work/roomsim" ./cmd/roomsim

freeport() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
tcp=$(freeport tcp)
udp=$(freeport udp)
base="https://127.0.0.1:$tcp"

taskset -c "$SERVER_CPUS" "$work/citybridge" serve --data "$work/data" --listen "127.0.0.1:$tcp" \
	--udp-host 127.0.0.1 --udp-port "$udp" --media-allow 127.0.0.0/8 --turn=false --ice-tcp=false \
	--log-level warn >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")

for _ in $(seq 300); do
	[ -s "$work/data/first-start.txt" ] && grep -q '/rooms#t=' "$work/data/first-start.txt" && break
	sleep 0.1
done
host=$(grep -o '/host#t=[A-Za-z0-9_-]*' "$work/data/first-start.txt" | cut -d= -f2)
tech=$(grep -o '/rooms#t=[A-Za-z0-9_-]*' "$work/data/first-start.txt" | cut -d= -f2)
[ -n "$host" ] && [ -n "$tech" ] || { echo "no links in first-start.txt" >&2; cat "$work/server.log" >&2; exit 1; }

api() { # METHOD PATH [BODY]: prints the status code; the body goes to $work/last
	curl -sk --max-time 30 -o "$work/last" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $host" \
		-H 'Content-Type: application/json' ${3:+--data "$3"} "$base$2"
}

total=$((WARMUP + 2 * PAIRS * (WINDOW + SETTLE) + 60))
taskset -c "$GEN_CPUS" "$work/roomsim" --url "$base" --token "$tech" --hub-token "$host" --conference c1 \
	--bridges "$ROOMS" --steady --duration "${total}s" --json >"$work/roomsim.json" 2>"$work/roomsim.log" &
gen=$!
pids+=("$gen")

echo "server pid $server on CPU $SERVER_CPUS, roomsim pid $gen on CPU $GEN_CPUS: $ROOMS rooms and a hub; warming up ${WARMUP} s" >&2
sleep "$WARMUP"
if [ -n "$FLOOR" ]; then
	code=$(api POST /api/conferences/c1/floor "{\"bridge\":\"$FLOOR\"}")
	[ "$code" = 200 ] || echo "floor to $FLOOR: $code $(cat "$work/last")" >&2
	sleep "$SETTLE"
fi

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# forwarded: the server's count of RTP packets forwarded (its /metrics,
# open to this machine): the load the synthetic city put on it.
forwarded() { curl -sk --retry 3 --max-time 10 "$base/metrics" | awk '$1 == "citybridge_rtp_packets_forwarded_total" { printf "%d\n", $2 }'; }
# window LABEL: over WINDOW s, the server's and roomsim's share of one
# core, the packets the server forwarded a second, and its CPU per
# forwarded packet (µs): on this shared machine other programs starve
# roomsim now and then, and the city then sends less, so the CPU per
# packet is the steadier figure.
window() {
	local s0 g0 f0 t0 s1 g1 f1 t1
	s0=$(cpu "$server"); g0=$(cpu "$gen"); f0=$(forwarded); t0=$(date +%s.%N)
	sleep "$WINDOW"
	s1=$(cpu "$server"); g1=$(cpu "$gen"); f1=$(forwarded); t1=$(date +%s.%N)
	awk -v l="$1" -v s="$((s1 - s0))" -v g="$((g1 - g0))" -v f="$((f1 - f0))" -v a="$t0" -v b="$t1" -v hz="$ticks" \
		-v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
		'BEGIN { d = b - a; printf "%s %.1f %.1f %.0f %.2f %s\n", l, 100 * s / hz / d, 100 * g / hz / d, f / d, (f > 0 ? 1e6 * s / hz / f : 0), load }'
}

: >"$work/windows"
for i in $(seq "$PAIRS"); do
	window off | tee -a "$work/windows" >&2
	code=$(api POST /api/conferences/c1/recording)
	[ "$code" = 200 ] || { echo "start recording: $code $(cat "$work/last")" >&2; exit 1; }
	sleep "$SETTLE"
	window on | tee -a "$work/windows" >&2
	code=$(api DELETE /api/conferences/c1/recording)
	[ "$code" = 200 ] || { echo "stop recording: $code $(cat "$work/last")" >&2; exit 1; }
	api DELETE /api/conferences/c1/recording/minutes >/dev/null # the render the stop queued
	sleep "$SETTLE"
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
off=$(awk '$1 == "off" { print $2 }' "$work/windows" | median)
on=$(awk '$1 == "on" { print $2 }' "$work/windows" | median)
offpkt=$(awk '$1 == "off" { print $5 }' "$work/windows" | median)
onpkt=$(awk '$1 == "on" { print $5 }' "$work/windows" | median)
pps=$(awk '{ print $4 }' "$work/windows" | sort -n | tail -1)
genmax=$(awk '{ print $3 }' "$work/windows" | sort -n | tail -1)
segments=$(jq -r '[.segments[] | .track] | group_by(.) | map("\(.[0]) \(length)") | join(", ")' "$work/data/recordings/c1/manifest.json" 2>/dev/null || echo "none")
receiving=$(curl -sk -H "Authorization: Bearer $tech" "$base/api/conferences/c1/bridges" | jq '[.[] | select(.state == "connected")] | length' 2>/dev/null || echo "?")

echo "rooms: $ROOMS, pairs: $PAIRS, window: ${WINDOW} s, nproc $(nproc), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "window server% roomsim% forwarded/s server-us/forwarded load1 load5 load15"
cat "$work/windows"
echo "median not recording: $off % of one core, $offpkt us per forwarded packet"
echo "median recording:     $on % of one core, $onpkt us per forwarded packet"
awk -v a="$off" -v b="$on" 'BEGIN { printf "added by the recording, raw: %.1f %% of one core\n", b - a }'
awk -v a="$offpkt" -v b="$onpkt" -v p="$pps" \
	'BEGIN { printf "added by the recording, per packet: %.2f us, at the busiest window'"'"'s %d packets/s: %.1f %% of one core\n", b - a, p, (b - a) * p / 1e4 }'
echo "roomsim's largest window: $genmax % (its CPUs: $GEN_CPUS)"
echo "segments recorded, by track: $segments"
echo "bridges joined at the end (presence): $receiving"
