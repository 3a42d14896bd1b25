#!/bin/sh
# The whole test suite, as CI runs it (./dev test): every test suite, the
# fast ones on the plain build (replay under valgrind among them) and all of
# them under AddressSanitizer+UBSan, a release build, and each libFuzzer
# target for a bounded time on its seed corpus. Each step prints its start
# time, so a slow one shows.
set -u
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
passed=0
failed=0
failures=""

step() {
        name=$1; shift
        echo "==> $name ($(date +%T))"
        if "$@"; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1))
                failures="$failures $name"
                echo "==> FAILED: $name"
        fi
}

# Configures a build directory the way CI wants it: warnings are errors here
# (and only here: users' newer compilers must not fail on a new warning).
# An existing directory is reconfigured so a stale one cannot skip -Werror.
setup() {
        dir=$1; shift
        if [ -f "$dir/build.ninja" ]; then
                meson configure "$dir" -Dwerror=true "$@" >/dev/null
        else
                meson setup "$dir" -Dwerror=true "$@" >/dev/null
        fi
}

# Fetching Kafka from Maven Central once, before the clock of any test runs.
bash tests/integration/kafka.sh fetch >/dev/null || echo "warning: could not fetch Kafka; integration tests will fail"

build_in() {
        dir=$1; shift
        setup "$dir" "$@" && ninja -C "$dir"
}

# The fuzzers need clang; CC only for their configuration.
fuzz_build() (
        CC=clang
        export CC
        build_in build-fuzz -Dfuzz=true -Dtests=false -Ddaemon=disabled
)

step build build_in build
# The suites against a real broker (integration, recovery) take minutes;
# they run once, under the sanitizers below, where a touched freed buffer
# in a crash or rebalance path is also caught.
step tests meson test -C build --print-errorlogs --num-processes 2 --no-suite integration --no-suite recovery
step asan-build build_in build-asan -Db_sanitize=address,undefined -Db_lundef=false
# Everything under the sanitizers, the daemon against the real broker and
# redis-server included (integration, recovery): its start, stop, crash and
# rebalance paths are where freed memory was touched.
step asan-tests env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        FENGHUO_NO_VALGRIND=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite browser
# Release (-O3, NDEBUG, _FORTIFY_SOURCE) finds warnings the others do not;
# the unit suite runs on it (seconds).
step release-build build_in build-release -Dbuildtype=release
step release-tests meson test -C build-release --print-errorlogs --num-processes 2 --suite unit
step fuzz-build fuzz_build
# The parsers get FUZZ_SECONDS each; the engine and the binary decoders
# (snapshot restore, state file, hand-over record) FUZZ_SECONDS_MORE each.
FUZZ_SECONDS_MORE=${FUZZ_SECONDS_MORE:-15}
for t in reading rules stations engine restore state handoff; do
        case $t in reading|rules|stations) secs=$FUZZ_SECONDS ;; *) secs=$FUZZ_SECONDS_MORE ;; esac
        corpus=$(mktemp -d)
        cp fuzz/corpus/$t/* "$corpus"/
        step "fuzz-$t" sh -c "build-fuzz/fuzz/fuzz_$t -max_total_time=$secs -max_len=70000 -timeout=10 \
                -rss_limit_mb=2048 $corpus > $corpus.log 2>&1; r=\$?; tail -3 $corpus.log; exit \$r"
        rm -f "$corpus.log"
        rm -rf "$corpus"
done

echo
[ -n "$failures" ] && echo "failed steps:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
