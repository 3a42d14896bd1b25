#!/usr/bin/env bash
# Runs fenghuo's benchmarks and prints their figures (docs/performance.md
# says what each one measures).
#
#   bench/run.sh [-B BUILDDIR] [replay|late|callgrind|daemon|stall|soak|all]     (default: all)
#
#   replay     engine: a simulated day of 10,000 stations, 3 runs, best and median
#   late       engine: 40,000 readings of one rain gauge within `lateness`, in
#              order, newest first and shuffled (3 runs each, best and median)
#   callgrind  engine: instructions per reading (valgrind)
#   daemon     `fenghuo run` against a real Kafka broker, in one run: a plain
#              consumer, the daemon as shipped and at each of BENCH_SHARDS
#              shards, the plain consumer again (rate, CPU, ratios, and the
#              machine's busy cores and the broker's CPU during each run,
#              after the broker settles and one uncounted daemon run); then
#              produce-to-alert latency at 10,000 readings/s against one
#              bare Kafka hop
#   stall      the daemon's loop during checkpoints, a reload and two rebalances
#              of BENCH_STALL_STATIONS (100000) stations with 12 hours of 5-minute
#              readings (mock Kafka): the longest the loop stops answering (the
#              watchdog is pinged from it), against the work done synchronously
#   soak       `fenghuo run` for BENCH_SOAK_SECONDS at 20,000 readings/s from
#              100,000 stations (each every 5 s, live timestamps): memory and
#              lag every 10 s. Not part of `all` (it takes 11 minutes).
#
# Environment: BENCH_RUNS (3), BENCH_STATIONS (10000), BENCH_READINGS for the
# daemon (5000000), BENCH_LATENCY_SECONDS (20), BENCH_LATENCY_REPEAT (3),
# BENCH_SHARDS for the daemon ("1 2 4": one throughput run per count, after
# one without the key; a daemon that refuses `shards:` has those skipped),
# BENCH_LATENCY_SHARDS (unset: no `shards:` key, the daemon's default),
# BENCH_BASELINE=FENGHUO (an older build's binary, run as well, without the
# key, for before/after figures from one broker and one run),
# TMPDIR (/tmp), FENGHUO_BUILD (the default of -B: build), BENCH_KEEP=DIR to
# keep the daemon runs' raw figures, configs and logs; for the soak
# BENCH_SOAK_SECONDS (600), BENCH_SOAK_RATE (20000), BENCH_SOAK_STATIONS
# (100000), BENCH_STALL_STATIONS (100000), BENCH_SOAK_RULES (short: the default rules with every window cut
# to 10 minutes or less, so the windows fill during the run; default: rules/
# as shipped), BENCH_SOAK_LATENESS (the daemon's lateness: 5m with the short
# rules, else its default 1h). Needs a build with the
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
                sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        *) break ;;
        esac
done
WHAT=${1:-all}
case $WHAT in
replay | late | callgrind | daemon | stall | soak | all) ;;
*)
        echo "run.sh: unknown benchmark '$WHAT' (replay, late, callgrind, daemon, stall, soak, all)" >&2
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

# Issue 8: a gauge whose readings arrive newest first (Kafka redelivering
# after a restart) made every late reading re-sort and rescan its windows.
# 40,000 readings 50 ms apart (33 minutes, inside the default 1 h lateness)
# of one rain gauge under the default rules (sum over 3 h, 6 h, 12 h); that
# is 20 readings/s, so the per-sensor rate cap is off (--no-caps).
bench_late() {
        local tool=$BUILD/bench/bench_replay n=40000 order i out
        [ -x "$tool" ] || { say "run.sh: no $tool"; exit 1; }
        awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
                printf "{\"sensor\":\"MY-RG-0001\",\"ts\":%.0f,\"values\":{\"rain_mm\":%.1f}}\n",
                        1690646400000 + 50 * i, (i % 7) / 10 }' >"$TMP/late-in-order.jsonl"
        tac "$TMP/late-in-order.jsonl" >"$TMP/late-newest-first.jsonl"
        awk 'BEGIN { srand(42) } { printf "%.9f %s\n", rand(), $0 }' "$TMP/late-in-order.jsonl" |
                sort -k1,1 | cut -d' ' -f2- >"$TMP/late-shuffled.jsonl"
        echo "== late: $n readings of one rain gauge, 50 ms apart, default rules ($RUNS runs each)"
        for order in in-order newest-first shuffled; do
                for i in $(seq 1 "$RUNS"); do
                        "$tool" --rules "$SRC/rules" --stations "$SRC/stations/miyun.csv" --no-caps \
                                "$TMP/late-$order.jsonl" >"$TMP/late-$order-$i.txt"
                done
                out=$TMP/late-$order-1.txt
                read -r b m < <(for i in $(seq 1 "$RUNS"); do get wall_s "$TMP/late-$order-$i.txt"; done |
                        best_median min)
                printf '%-14s wall_s best %8s  median %8s   accepted %s  alerts %s\n' "$order" "$b" "$m" \
                        "$(get accepted "$out")" "$(get alerts "$out")"
        done
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
        local tool=$BUILD/bench/bench_daemon broker rules out i n d kind v=same
        local shards=${BENCH_SHARDS-1 2 4} base=${BENCH_BASELINE:-} lshards=${BENCH_LATENCY_SHARDS:--}
        [ -x "$tool" ] || { say "run.sh: no $tool (a build without the daemon?)"; exit 1; }
        if [ -n "$base" ]; then
                base=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")
                [ -x "$base" ] || { say "run.sh: BENCH_BASELINE: no $base"; exit 1; }
        fi
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
        # Throughput: the daemons in this order, between two plain runs.
        local daemons=() names=()
        if [ -n "$base" ]; then
                daemons+=(--daemon "baseline:-:$base")
                names+=(baseline)
        fi
        daemons+=(--daemon "shipped:-")
        names+=(shipped)
        for n in $shards; do
                case $n in
                '' | *[!0-9]*) say "run.sh: BENCH_SHARDS wants counts, got '$n'"; exit 2 ;;
                esac
                daemons+=(--daemon "shards$n:$n")
                names+=("shards$n")
        done
        # Latency: one bare Kafka hop and each daemon, interleaved run by
        # run, so that the machine's load drifting spreads over all of them.
        local runs=() lat=(kafka daemon)
        [ -n "$base" ] && lat+=(baseline)
        for i in $(seq 1 "$LAT_REPEAT"); do
                runs+=(--latency-run "kafka$i:5:kafka" --latency-run "daemon$i:5:-:$lshards")
                [ -n "$base" ] && runs+=(--latency-run "baseline$i:5:-:-:$base")
        done
        out=$TMP/daemon.txt
        mkdir -p "$TMP/daemon"
        # Both consumers with the daemon's own fetch setting
        # (src/daemon/kafka_in.c): the reference is the bare consumer at its
        # fastest, not librdkafka's defaults.
        "$tool" --brokers "$broker" --fenghuo "$FENGHUO" --rules "$rules" --stations "$TMP/stations.csv" \
                --workdir "$TMP/daemon" --readings "$READINGS" --broker-pid "$(cat "$KAFKA_DIR/kafka.pid")" \
                --variant "$v:queued.min.messages=1000000" "${daemons[@]}" \
                --seconds "$LAT_SECONDS" "${runs[@]}" >"$out"
        echo "== daemon throughput from Kafka: $(get produced "$out") readings, $(get stations "$out") stations," \
                "4 topics of 4 partitions, librdkafka $(get librdkafka "$out")"
        echo "consumer properties of all: $(get $v.consumer_properties "$out");" \
                "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "ratios: to the faster of the plain consumer's two runs (before and after the daemons)"
        # (µ is two bytes: its column is one wider in the header.)
        printf '%-14s %7s %12s %8s %7s %15s %7s %12s %8s\n' run shards readings/s s CPU-s "µs CPU/reading" /plain \
                steady/s /plain
        for d in plain_before "${names[@]}" plain_after; do
                local p=$v.$d
                if [ -n "$(get "$p.skipped" "$out")" ]; then
                        printf '%-14s %7s  skipped: %s\n' "$d" "$(get "$p.shards" "$out")" \
                                "$(get "$p.skipped" "$out" | tr _ ' ')"
                        continue
                fi
                printf '%-14s %7s %12s %8s %7s %14s %7s %12s %8s\n' "$d" "$(get "$p.shards" "$out")" \
                        "$(get "$p.per_s" "$out")" "$(get "$p.s" "$out")" "$(get "$p.cpu_s" "$out")" \
                        "$(get "$p.us_cpu_per_reading" "$out")" "$(get "$p.vs_plain" "$out")" \
                        "$(get "$p.steady_per_s" "$out")" "$(get "$p.vs_plain_steady" "$out")"
        done
        # The broker shares the machine: a run whose machine is busy on
        # every core could not have gone faster, whatever the daemon did.
        echo "the machine during each run: busy cores of $(get $v.plain_before.cores "$out") (every process)," \
                "the broker's CPU-s"
        local who
        for d in warmup plain_before "${names[@]}" plain_after; do
                [ -n "$(get "$v.$d.machine_busy_cores" "$out")" ] || continue
                who=daemon
                [ "${d#plain}" != "$d" ] && who=consumer
                printf '  %-14s busy %5s  broker %6s CPU-s  %s %6s CPU-s  %s/s\n' "$d" \
                        "$(get "$v.$d.machine_busy_cores" "$out")" "$(get "$v.$d.broker_cpu_s" "$out")" \
                        "$who" "$(get "$v.$d.cpu_s" "$out")" "$(get "$v.$d.per_s" "$out")"
        done
        echo "(warmup: the daemon as shipped once first, not compared: the broker's first daemon runs cost it more)"
        echo "CPU-s of the busiest threads (a thread near the run's seconds is what bounds it):"
        for d in plain_before "${names[@]}"; do
                if [ -n "$(get "$v.$d.threads" "$out")" ]; then
                        printf '  %-14s %s\n' "$d" "$(get "$v.$d.threads" "$out" | tr , ' ')"
                fi
        done
        echo "== latency, produce -> alert received, $(get latency.daemon1.rate_per_s "$out") readings/s," \
                "${LAT_SECONDS} s a run, $LAT_REPEAT runs each, interleaved; ms"
        printf '%-40s %-24s %-24s %-10s %-10s %s\n' path "p50 of each run" "p99 of each run" "median p50" \
                "median p99" "p99 - hop p99"
        local hop99=
        for kind in "${lat[@]}"; do
                case $kind in
                kafka) label="one Kafka hop, no daemon (reference)" ;;
                daemon) label="daemon (shards: ${BENCH_LATENCY_SHARDS:-not set})" ;;
                *) label="baseline daemon" ;;
                esac
                local p50s= p99s= m50 m99 diff=-
                for i in $(seq 1 "$LAT_REPEAT"); do
                        p50s+="$(get latency.$kind$i.p50_ms "$out") "
                        p99s+="$(get latency.$kind$i.p99_ms "$out") "
                done
                read -r _ m50 < <(tr ' ' '\n' <<<"$p50s" | grep . | best_median min)
                read -r _ m99 < <(tr ' ' '\n' <<<"$p99s" | grep . | best_median min)
                if [ "$kind" = kafka ]; then
                        hop99=$m99
                else
                        diff=$(awk -v a="$m99" -v b="$hop99" 'BEGIN { printf "%+.2f", a - b }')
                fi
                printf '%-40s %-24s %-24s %-10s %-10s %s\n' "$label" "$p50s" "$p99s" "$m50" "$m99" "$diff"
        done
        printf 'load average (1 min) at the end of each run:'
        for i in $(seq 1 "$LAT_REPEAT"); do
                for kind in "${lat[@]}"; do
                        printf ' %s%s %s' "$kind" "$i" "$(get latency.$kind$i.loadavg_1m "$out")"
                done
        done
        printf '\nmatched probes: '
        for kind in "${lat[@]}"; do
                printf '%s %s/%s ' "$kind" "$(get latency.${kind}1.matched "$out")" "$(get latency.${kind}1.probes "$out")"
        done
        printf '(run 1)\n'
        if [ -n "${BENCH_KEEP:-}" ]; then
                mkdir -p "$BENCH_KEEP"
                cp "$out" "$TMP"/daemon/*.log "$TMP"/daemon/*.tsv "$TMP"/daemon/*.yaml "$BENCH_KEEP"/ 2>/dev/null || true
                say "raw figures and logs copied to $BENCH_KEEP"
        fi
}

bench_stall() {
        local tool=$BUILD/bench/bench_stall rules=$TMP/rules-no-age out=$TMP/stall.txt n=${BENCH_STALL_STATIONS:-100000}
        [ -x "$tool" ] || { say "run.sh: no $tool (a build without the daemon?)"; exit 1; }
        # clock: event, and no age() rules: the 2023 readings would make
        # every station silent on the first wall-time tick.
        mkdir -p "$rules" "$TMP/stall"
        for f in "$SRC"/rules/*.yaml; do
                grep -q 'age()' "$f" || cp "$f" "$rules/"
        done
        say "filling $n stations with 12 hours of 5-minute readings, then running the daemon on a mock Kafka"
        "$tool" --rules "$rules" --workdir "$TMP/stall" --stations "$n" --checkpoints 3 --interval 3 >"$out" 2>"$TMP/stall/daemon.log"
        echo "== loop stalls: $(get stations "$out") stations, $(get readings "$out") readings, state $(get state_bytes "$out") bytes"
        printf '%-44s %8s s\n' "checkpoint done on the loop (before)" "$(get sync.checkpoint_s "$out")"
        printf '%-44s %8s s  (load %s, snapshot %s, restore %s)\n' "reload done on the loop (before)" \
                "$(get sync.reload_s "$out")" "$(get sync.reload_load_s "$out")" "$(get sync.reload_snapshot_s "$out")" \
                "$(get sync.reload_restore_s "$out")"
        echo "longest gap between two ticks of a 1-ms timer on the loop; in brackets the loop thread's longest CPU burst between two ticks"
        printf '%-44s %8s ms [%s ms] over %s checkpoints\n' "longest loop stall during checkpoints" \
                "$(get checkpoint.max_stall_ms "$out")" "$(get checkpoint.max_busy_ms "$out")" "$(get checkpoint.count "$out")"
        printf '%-44s %8s ms [%s ms] (reload took %s s)\n' "longest loop stall during a reload" \
                "$(get reload.max_stall_ms "$out")" "$(get reload.max_busy_ms "$out")" "$(get reload.s "$out")"
        printf '%-44s %8s ms [%s ms] (join: %s s until both members consume; leave: %s s until it has all again)\n' \
                "longest loop stall during two rebalances" "$(get rebalance.max_stall_ms "$out")" \
                "$(get rebalance.max_busy_ms "$out")" "$(get rebalance.join_s "$out")" "$(get rebalance.leave_s "$out")"
        printf '%-44s %8s ms\n' "longest loop stall while idle (reference)" "$(get warmup.max_stall_ms "$out")"
        printf '%-44s %8s KiB\n' "peak RSS" "$(get peak_rss_kib "$out")"
        if [ -n "${BENCH_KEEP:-}" ]; then
                mkdir -p "$BENCH_KEEP"
                cp "$out" "$TMP/stall/daemon.log" "$BENCH_KEEP"/ 2>/dev/null || true
        fi
}

# The default rules with every window at 10 minutes or less (and `for:`
# cut to match), so that at 5-s reporting the rings fill within the soak and
# flat memory afterwards means something. silence.yaml is kept as it is.
short_rules() {
        local dir=$1
        mkdir -p "$dir"
        cp "$SRC"/rules/*.yaml "$dir"/
        sed -i -e 's/sum(rain_mm, 3h)/sum(rain_mm, 3m)/g' -e 's/sum(rain_mm, 6h)/sum(rain_mm, 6m)/g' \
                -e 's/sum(rain_mm, 12h)/sum(rain_mm, 10m)/g' "$dir/rain.yaml"
        sed -i -e 's/rate(level_m, 1h)/rate(level_m, 5m)/g' "$dir/water.yaml"
        sed -i -e 's/rate(displacement_mm, 1d)/rate(displacement_mm, 10m)/g' -e 's/^\(    for:\) 1h/\1 5m/' \
                "$dir/landslide.yaml"
        # Comments (fields.yaml quotes a 3-h sum as an example) do not count.
        local long
        long=$(grep -En '\(([^()]*), *([0-9]+[hd]|[1-9][1-9][0-9]*m|[2-9][0-9]m)\)' "$dir"/*.yaml |
                grep -Ev '^[^:]*:[0-9]+:[[:space:]]*#' || true)
        if [ -n "$long" ]; then
                say "run.sh: short_rules left a window longer than 10 minutes:"
                echo "$long" >&2
                exit 1
        fi
}

bench_soak() {
        local tool=$BUILD/bench/bench_daemon broker rules out secs=${BENCH_SOAK_SECONDS:-600}
        local rate=${BENCH_SOAK_RATE:-20000} n=${BENCH_SOAK_STATIONS:-100000} which=${BENCH_SOAK_RULES:-short}
        local late=()
        [ -x "$tool" ] || { say "run.sh: no $tool (a build without the daemon?)"; exit 1; }
        case $which in
        short)
                rules=$TMP/rules-short
                short_rules "$rules"
                # Duplicate detection keeps each sensor's timestamps within
                # lateness: an hour of them would not fill in 10 minutes either.
                late=(--lateness "${BENCH_SOAK_LATENESS:-5m}")
                ;;
        default)
                rules=$SRC/rules
                [ -n "${BENCH_SOAK_LATENESS:-}" ] && late=(--lateness "$BENCH_SOAK_LATENESS")
                ;;
        *)
                say "run.sh: BENCH_SOAK_RULES is short or default, not '$which'"
                exit 2
                ;;
        esac
        KAFKA_DIR=$TMP/kafka
        say "starting a Kafka broker"
        broker=$(FENGHUO_OWNER_PID=$$ "$SRC/tests/integration/kafka.sh" start "$KAFKA_DIR")
        "$FENGHUO" simulate --synthetic "$n" --write-stations "$TMP/soak-stations.csv" --duration 1m >/dev/null
        out=$TMP/soak.txt
        mkdir -p "$TMP/soak"
        "$tool" --brokers "$broker" --fenghuo "$FENGHUO" --rules "$rules" --stations "$TMP/soak-stations.csv" \
                --workdir "$TMP/soak" --rate "$rate" --soak "$secs" "${late[@]}" >"$out"
        echo "== soak: $(get soak.rate_per_s "$out") readings/s for $(get soak.seconds "$out") s," \
                "$(get stations "$out") stations (each every $(get soak.station_interval_s "$out") s), rules: $which, lateness $(get soak.lateness "$out")"
        echo "every 10 s: daemon VmRSS and its metrics file (written every 10 s, so up to 10 s old)"
        awk '$1 == "soak.samples" { printf "%7s %9s %9s %10s %10s %10s %7s %8s %7s %8s %6s\n", "t_s", "rss_MiB", "hwm_MiB", "produced", "consumed", "accepted", "lag", "behind_s", "alerts", "inflight", "load1" }
             $1 == "soak.sample" { printf "%7s %9s %9s %10s %10s %10s %7s %8s %7s %8s %6s\n", $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' "$out"
        printf 'RSS MiB: idle %s, at 1 min %s, 5 min %s, 10 min %s, end %s, peak %s\n' \
                "$(awk -v k="$(get soak.rss_idle_kib "$out")" 'BEGIN { printf "%.1f", k / 1024 }')" \
                "$(get soak.rss_mib_at_60s "$out")" "$(get soak.rss_mib_at_300s "$out")" "$(get soak.rss_mib_at_600s "$out")" \
                "$(get soak.rss_mib_end "$out")" "$(get soak.rss_hwm_mib "$out")"
        printf 'RSS slope over the last 5 minutes of production: %s MiB/min\n' "$(get soak.rss_slope_last_5min_mib_per_min "$out")"
        printf 'lag (messages): max %s, at the end of production %s, after draining %s; behind max %s s\n' \
                "$(get soak.lag_max "$out")" "$(get soak.lag_end_of_production "$out")" \
                "$(get soak.lag_after_drain "$out")" "$(get soak.behind_s_max "$out")"
        printf 'produced %s in %s s (producer at most %s s behind schedule); consumed %s, accepted %s, future-rejected %s\n' \
                "$(get soak.produced "$out")" "$(get soak.produce_s "$out")" "$(get soak.producer_behind_max_s "$out")" \
                "$(get soak.consumed "$out")" "$(get soak.accepted "$out")" "$(get soak.future_rejected "$out")"
        printf 'alerts %s; daemon CPU %s s; load average at the end %s\n' "$(get soak.alerts "$out")" \
                "$(get soak.daemon_cpu_s "$out")" "$(get soak.loadavg_1m_end "$out")"
        if [ -n "${BENCH_KEEP:-}" ]; then
                mkdir -p "$BENCH_KEEP"
                cp "$out" "$TMP"/soak/* "$BENCH_KEEP"/ 2>/dev/null || true
                [ "$which" = short ] && cp -r "$rules" "$BENCH_KEEP"/
                say "raw figures and logs copied to $BENCH_KEEP"
        fi
}

machine
case $WHAT in
soak) bench_soak ;;
replay) bench_replay ;;
late) bench_late ;;
callgrind) bench_callgrind ;;
daemon) bench_daemon ;;
stall) bench_stall ;;
all)
        bench_replay
        bench_late
        bench_callgrind
        if [ -x "$BUILD/bench/bench_daemon" ]; then
                bench_daemon
        else
                say "no bench_daemon in $BUILD (built without the daemon): skipping the daemon benchmark"
        fi
        [ -x "$BUILD/bench/bench_stall" ] && bench_stall
        ;;
esac
