#!/usr/bin/env bash
# Throwaway redis-server for fenghuo's integration tests.
#
#   redis.sh start DIR    start redis on a free 127.0.0.1 port (DIR's previous one if still free)
#                         with its files in DIR; print the port
#   redis.sh stop DIR     stop it (TERM, then KILL); no-op when not running
#   redis.sh port DIR     print the port of the server in DIR
#
# Environment:
#   FENGHUO_REDIS_START_TIMEOUT  seconds to wait for PONG (default 10)
#   FENGHUO_OWNER_PID            if set, the server is killed once this process is gone
#
# Everything except the port goes to stderr, so callers can capture stdout.
set -euo pipefail

SCRIPT_NAME=redis.sh
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

START_TIMEOUT=${FENGHUO_REDIS_START_TIMEOUT:-10}
STOP_TIMEOUT=10


usage() {
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
}

need() {
        command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install redis-server redis-tools)"
}

# redis-server re-parses its argv as config text, which mangles blanks.
absdir() {
        case $1 in
        *[[:space:]\\\"\']* | '') die "unsupported directory name: '$1'" ;;
        esac
        mkdir -p "$1"
        (cd "$1" && pwd)
}


# redis-server sets its title to "redis-server 127.0.0.1:PORT"; checking it
# guards against a recycled pid.
is_ours() {
        alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "redis-server 127\.0\.0\.1:$2\b"
}




ping_ok() {
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

kill_pid() {
        local pid=$1 deadline
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT))
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.05
        done
        if alive "$pid"; then
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 5))
                while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
                        sleep 0.05
                done
        fi
        ! alive "$pid"
}

# 0 ready, 1 the server is gone, 2 deadline passed.
wait_ready() {
        local dir=$1 port=$2 deadline pid
        deadline=$((SECONDS + START_TIMEOUT))
        while :; do
                grep -qE 'Address already in use|Could not create server TCP listening socket' \
                        "$dir/redis.log" 2>/dev/null && return 1
                if ping_ok "$port"; then
                        pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
                        # PONG from a server that is not ours means we lost a port race.
                        [ -n "$pid" ] && is_ours "$pid" "$port" && return 0
                fi
                [ "$SECONDS" -ge "$deadline" ] && return 2
                sleep 0.05
        done
}

start_watchdog() {
        local dir=$1 port=$2 owner=${FENGHUO_OWNER_PID:-} pid
        [ -n "$owner" ] || return 0
        pid=$(cat "$dir/redis.pid")
        (
                # stop TERMs us; take the sleep along so nothing outlives the server.
                nap=
                trap 'kill $nap 2>/dev/null; exit 0' TERM
                while alive "$owner" && is_ours "$pid" "$port"; do
                        sleep 1 &
                        nap=$!
                        wait "$nap"
                done
                is_ours "$pid" "$port" && kill_pid "$pid"
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/watchdog.pid"
}

cmd_start() {
        [ $# -eq 1 ] || usage
        need redis-server
        need redis-cli
        local dir port pid attempt rc
        dir=$(absdir "$1")
        port=$(cat "$dir/port" 2>/dev/null || true)
        pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
        if [ -n "$port" ] && [ -n "$pid" ] && is_ours "$pid" "$port"; then
                die "redis is already running in $dir (pid $pid, port $port)"
        fi
        # Reusing the old port lets a test bounce redis under a connected client.
        local prev=$port
        for attempt in 1 2 3; do
                if [ "$attempt" -eq 1 ] && [ -n "$prev" ] && ! port_listening "$prev"; then
                        port=$prev
                else
                        port=$(pick_port)
                fi
                rm -f "$dir/redis.pid"
                [ -f "$dir/redis.log" ] && mv -f "$dir/redis.log" "$dir/redis.log.prev"
                redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
                        --logfile "$dir/redis.log" </dev/null >"$dir/redis.out" 2>&1 || {
                        cat "$dir/redis.out" >&2
                        die "redis-server refused to start"
                }
                rc=0
                wait_ready "$dir" "$port" || rc=$?
                if [ "$rc" -eq 0 ]; then
                        echo "$port" >"$dir/port"
                        start_watchdog "$dir" "$port"
                        echo "$port"
                        return 0
                fi
                pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
                [ -n "$pid" ] && is_ours "$pid" "$port" && kill_pid "$pid"
                rm -f "$dir/redis.pid"
                [ "$rc" -eq 1 ] && [ "$attempt" -lt 3 ] && {
                        echo "redis.sh: port $port clash, retrying" >&2
                        continue
                }
                {
                        echo "redis.sh: redis in $dir did not answer PING within ${START_TIMEOUT}s; end of its log:"
                        tail -n 20 "$dir/redis.log" 2>/dev/null || true
                        cat "$dir/redis.out" 2>/dev/null || true
                } >&2
                exit 1
        done
}

cmd_stop() {
        [ $# -eq 1 ] || usage
        local dir port pid wd
        dir=$(absdir "$1")
        wd=$(cat "$dir/watchdog.pid" 2>/dev/null || true)
        if [ -n "$wd" ] && alive "$wd"; then
                kill -TERM "$wd" 2>/dev/null || true
        fi
        rm -f "$dir/watchdog.pid"
        port=$(cat "$dir/port" 2>/dev/null || true)
        pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
        if [ -n "$port" ] && [ -n "$pid" ] && is_ours "$pid" "$port"; then
                kill_pid "$pid" || die "redis pid $pid in $dir would not die"
        fi
        rm -f "$dir/redis.pid"
}

cmd_port() {
        [ $# -eq 1 ] || usage
        local dir
        dir=$(absdir "$1")
        [ -f "$dir/port" ] || die "no redis was started in $dir"
        cat "$dir/port"
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
port) cmd_port "$@" ;;
*) usage ;;
esac
