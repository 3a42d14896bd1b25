#!/usr/bin/env bash
# Runs fenghuo's benchmarks and prints their figures (docs/performance.md
# says what each one measures).
#
#   bench/run.sh [-B BUILDDIR] [replay|callgrind|daemon|all]     (default: all)
#
#   replay     engine: a simulated day of 10,000 stations, 3 runs, best and median
#   callgrind  engine: instructions per reading (valgrind)
#   daemon     `fenghuo run` against a real Kafka broker: throughput against a
#              plain consumer, and produce-to-alert latency at 10,000 readings/s
#
# Environment: BENCH_RUNS (3), BENCH_STATIONS (10000), BENCH_READINGS for the
# daemon (5000000), BENCH_LATENCY_SECONDS (20), BENCH_LATENCY_REPEAT (3),
# TMPDIR (/tmp), FENGHUO_BUILD (the default of -B: build), BENCH_KEEP=DIR to
# keep the daemon runs' raw figures, configs and logs. Needs a build with the
# daemon for `daemon`, java/kcat for the broker (tests/integration/README.md),
# valgrind for `callgrind`. Everything else it writes goes into one temporary
# directory, removed at exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
BUILD=${FENGHUO_BUILD:-$SRC/build}
RUNS=${BENCH_RUNS:-3}
STATIONS=${BENCH_STATIONS:-10000}
READINGS=${BENCH_READINGS:-5000000}
LAT_SECONDS=${BENCH_LATENCY_SECONDS:-20}
LAT_REPEAT=${BENCH_LATENCY_REPEAT:-3}

while [ $# -gt 0 ]; do
        case $1 in
        -B)
                BUILD=$2
                shift 2
                ;;
        -B*)
                BUILD=${1#-B}
                shift
                ;;
        -h | --help)
                sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        *) break ;;
        esac
done
WHAT=${1:-all}
case $WHAT in
replay | callgrind | daemon | all) ;;
*)
        echo "run.sh: unknown benchmark '$WHAT' (replay, callgrind, daemon, all)" >&2
        exit 2
        ;;
esac
BUILD=$(cd "$BUILD" && pwd)
FENGHUO=$BUILD/fenghuo
[ -x "$FENGHUO" ] || {
        echo "run.sh: no $FENGHUO; build first (meson setup $BUILD && ninja -C $BUILD)" >&2
        exit 1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fenghuo-bench.XXXXXX")
KAFKA_DIR=
cleanup() {
        if [ -n "$KAFKA_DIR" ]; then
                "$SRC/tests/integration/kafka.sh" stop "$KAFKA_DIR" >/dev/null 2>&1 || true
        fi
        rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# "name value" lines in, the value of one name out.
get() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }

# Values on stdin, one per line: "best median" (best = largest unless $1 = min).
best_median() {
        sort -g | awk -v want="${1:-max}" '
                { v[NR] = $1 }
                END {
                        if (NR == 0) { print "- -"; exit }
                        best = want == "min" ? v[1] : v[NR]
                        med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                        printf "%s %s\n", best, med
                }'
}

machine() {
        printf 'machine: %s CPUs, %s, %s\n' "$(nproc)" \
                "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
                "$(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
        printf 'date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf 'build: %s (%s)\n' "$BUILD" "$(meson configure "$BUILD" 2>/dev/null |
                awk '$1 == "buildtype" || $1 == "optimization" || $1 == "b_ndebug" { printf "%s=%s ", $1, $2 }')"
        printf 'load average at start: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

day_file() {
        [ -f "$TMP/day.jsonl" ] && return 0
        say "generating a simulated day: $STATIONS stations, one reading a minute each"
        "$FENGHUO" simulate --synthetic "$STATIONS" --write-stations "$TMP/stations.csv" \
                --duration 1d --step 1m >"$TMP/day.jsonl"
        say "  $(wc -l <"$TMP/day.jsonl") lines, $(du -h "$TMP/day.jsonl" | cut -f1)"
}

bench_replay() {
        local tool=$BUILD/bench/bench_replay i out
        [ -x "$tool" ] || { say "run.sh: no $tool"; exit 1; }
        day_file
        echo "== replay: parse + ingest of a simulated day, default rules ($RUNS runs)"
        for i in $(seq 1 "$RUNS"); do
                out=$TMP/replay-$i.txt
                "$tool" --rules "$SRC/rules" --stations "$TMP/stations.csv" "$TMP/day.jsonl" >"$out"
                say "  run $i: $(get readings_per_s_wall "$out") readings/s wall, $(get readings_per_s_cpu "$out") CPU"
        done
        set -- "$TMP"/replay-*.txt
        echo "lines $(get lines "$1")  stations $(get stations "$1")  alerts $(get alerts "$1")"
        for k in readings_per_s_wall readings_per_s_cpu; do
                read -r b m < <(for f in "$@"; do get $k "$f"; done | best_median max)
                printf '%-36s best %10s  median %10s\n' "$k" "$b" "$m"
        done
        for k in ns_per_reading_cpu wall_s; do
                read -r b m < <(for f in "$@"; do get $k "$f"; done | best_median min)
                printf '%-36s best %10s  median %10s\n' "$k" "$b" "$m"
        done
        for k in engine_bytes_per_station peak_rss_growth_bytes_per_station peak_rss_kib; do
                read -r b m < <(for f in "$@"; do get $k "$f"; done | best_median min)
                printf '%-36s %10s (median)\n' "$k" "$m"
        done
        # The state of 10,000 sensors is ~160 MB touched at random: with
        # 4 KiB pages most readings also miss the TLB. glibc >= 2.35 can back
        # malloc with transparent huge pages; one run shows what that buys.
        out=$TMP/replay-hugetlb.txt
        GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$tool" --rules "$SRC/rules" --stations "$TMP/stations.csv" \
                "$TMP/day.jsonl" >"$out"
        printf '%-36s %10s readings/s wall, %s CPU (one run)\n' "with glibc.malloc.hugetlb=1" \
                "$(get readings_per_s_wall "$out")" "$(get readings_per_s_cpu "$out")"
}

bench_callgrind() {
        local tool=$BUILD/bench/bench_replay n=300000 a z
        command -v valgrind >/dev/null || { say "run.sh: valgrind not found, skipping callgrind"; return 0; }
        day_file
        echo "== callgrind: instructions per reading over the first $n lines"
        for lim in "$n" 0; do
                valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$lim" "$tool" --rules "$SRC/rules" \
                        --stations "$TMP/stations.csv" --limit "$lim" "$TMP/day.jsonl" >/dev/null 2>"$TMP/cg.$lim.log"
        done
        a=$(awk '/^summary:|^totals:/ { print $2; exit }' "$TMP/cg.$n")
        z=$(awk '/^summary:|^totals:/ { print $2; exit }' "$TMP/cg.0")
        echo "Ir($n lines) $a  Ir(0 lines) $z"
        awk -v a="$a" -v z="$z" -v n="$n" 'BEGIN { printf "instructions_per_reading %.0f\n", (a - z) / n }'
}

bench_daemon() {
        local tool=$BUILD/bench/bench_daemon broker rules out runs i
        [ -x "$tool" ] || { say "run.sh: no $tool (a build without the daemon?)"; exit 1; }
        KAFKA_DIR=$TMP/kafka
        say "starting a Kafka broker"
        broker=$(FENGHUO_OWNER_PID=$$ "$SRC/tests/integration/kafka.sh" start "$KAFKA_DIR")
        # The daemon's clock is wall time; the simulated readings are from
        # 2023, so age() rules would find every station silent.
        rules=$TMP/rules-no-age
        mkdir -p "$rules"
        for f in "$SRC"/rules/*.yaml; do
                grep -q 'age()' "$f" || cp "$f" "$rules/"
        done
        [ -f "$TMP/stations.csv" ] || "$FENGHUO" simulate --synthetic "$STATIONS" \
                --write-stations "$TMP/stations.csv" --duration 1m >/dev/null
        runs=(--latency-run kafka1:5:kafka)
        for i in $(seq 1 "$LAT_REPEAT"); do
                runs+=(--latency-run "shipped$i:5:-" --latency-run "linger0_$i:5:0")
        done
        for i in $(seq 2 "$LAT_REPEAT"); do
                runs+=(--latency-run "kafka$i:5:kafka")
        done
        out=$TMP/daemon.txt
        mkdir -p "$TMP/daemon"
        "$tool" --brokers "$broker" --fenghuo "$FENGHUO" --rules "$rules" --stations "$TMP/stations.csv" \
                --workdir "$TMP/daemon" --readings "$READINGS" \
                --variant shipped: --variant tuned:queued.min.messages=1000000 \
                --seconds "$LAT_SECONDS" "${runs[@]}" >"$out"
        echo "== daemon throughput from Kafka: $(get produced "$out") readings, $(get stations "$out") stations, librdkafka $(get librdkafka "$out")"
        for v in shipped tuned; do
                printf '%s (consumer properties: %s)\n' "$v" "$(get $v.consumer_properties "$out")"
                printf '  %-28s %10s/s  (%s s from start to committed end; %s CPU-s)\n' plain \
                        "$(get $v.plain_per_s "$out")" "$(get $v.plain_s "$out")" "$(get $v.plain_cpu_s "$out")"
                printf '  %-28s %10s/s  (%s s from start to committed end; %s CPU-s)\n' daemon \
                        "$(get $v.daemon_per_s "$out")" "$(get $v.daemon_s "$out")" "$(get $v.daemon_cpu_s "$out")"
                printf '  %-28s %10s\n' "daemon/plain" "$(get $v.daemon_vs_plain "$out")"
                printf '  %-28s %10s/s plain, %s/s daemon, ratio %s\n' "steady (no start-up)" \
                        "$(get $v.plain_steady_per_s "$out")" "$(get $v.daemon_steady_per_s "$out")" \
                        "$(get $v.daemon_vs_plain_steady "$out")"
        done
        echo "== latency, produce -> alert received, $(get latency.shipped1.rate_per_s "$out") readings/s, ${LAT_SECONDS} s per run, p50/p99/max in ms"
        for kind in kafka shipped linger0_; do
                case $kind in
                kafka) label="one Kafka hop, no daemon (reference)" ;;
                shipped) label="daemon as shipped (its producer linger.ms 0)" ;;
                *) label="daemon, its producer linger.ms 0" ;;
                esac
                echo "$label; readings' producer linger.ms $(get latency.${kind}1.producer_linger_ms "$out")"
                for i in $(seq 1 "$LAT_REPEAT"); do
                        n=$kind$i
                        printf '  run %s: p50 %7s  p99 %7s  max %7s  (%s of %s probes matched; load average %s)\n' \
                                "$i" "$(get latency.$n.p50_ms "$out")" "$(get latency.$n.p99_ms "$out")" \
                                "$(get latency.$n.max_ms "$out")" "$(get latency.$n.matched "$out")" \
                                "$(get latency.$n.probes "$out")" "$(get latency.$n.loadavg_1m "$out")"
                done
                read -r _ p50 < <(for i in $(seq 1 "$LAT_REPEAT"); do get latency.$kind$i.p50_ms "$out"; done | best_median min)
                read -r _ p99 < <(for i in $(seq 1 "$LAT_REPEAT"); do get latency.$kind$i.p99_ms "$out"; done | best_median min)
                printf '  median of runs: p50 %s  p99 %s\n' "$p50" "$p99"
        done
        if [ -n "${BENCH_KEEP:-}" ]; then
                mkdir -p "$BENCH_KEEP"
                cp "$out" "$TMP"/daemon/*.log "$TMP"/daemon/*.tsv "$TMP"/daemon/*.yaml "$BENCH_KEEP"/ 2>/dev/null || true
                say "raw figures and logs copied to $BENCH_KEEP"
        fi
}

machine
case $WHAT in
replay) bench_replay ;;
callgrind) bench_callgrind ;;
daemon) bench_daemon ;;
all)
        bench_replay
        bench_callgrind
        if [ -x "$BUILD/bench/bench_daemon" ]; then
                bench_daemon
        else
                say "no bench_daemon in $BUILD (built without the daemon): skipping the daemon benchmark"
        fi
        ;;
esac
