#!/bin/sh
# The whole test suite, as CI runs it (./dev test): the build and every
# test suite, the same under AddressSanitizer+UBSan, replay under valgrind,
# and each libFuzzer target for a bounded time on its seed corpus.
set -u
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0
failures=""

step() {
        name=$1; shift
        echo "==> $name"
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
step tests meson test -C build --print-errorlogs --num-processes 2
step asan-build build_in build-asan -Db_sanitize=address,undefined -Db_lundef=false
# The daemon under the sanitizers too, against the real broker and
# redis-server (integration, recovery): its start, stop, crash and rebalance
# paths are where freed memory was touched. They add about 3.7 min
# (daemon 61 s, recovery 161 s, measured on the 2-core CI machine).
step asan-tests env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        FENGHUO_NO_VALGRIND=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --suite e2e --suite redis \
        --suite integration --suite recovery
# Release (-O3, NDEBUG, _FORTIFY_SOURCE) finds warnings the others do not;
# everything is compiled, and the fast suites (unit, e2e: seconds) run on it.
step release-build build_in build-release -Dbuildtype=release
step release-tests meson test -C build-release --print-errorlogs --num-processes 2 --suite unit --suite e2e
step fuzz-build fuzz_build
# The parsers get FUZZ_SECONDS each; the engine and the binary decoders
# (snapshot restore, state file, hand-over record) FUZZ_SECONDS_MORE each.
FUZZ_SECONDS_MORE=${FUZZ_SECONDS_MORE:-20}
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
