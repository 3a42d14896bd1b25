#!/usr/bin/env bash
# Throwaway single-node KRaft Kafka broker for fenghuo's integration tests.
#
#   kafka.sh fetch                            assemble the broker from Maven Central into the cache
#   kafka.sh start DIR                        start a broker whose state lives in DIR; print host:port
#   kafka.sh stop DIR                         stop it (TERM, then KILL); no-op when not running
#   kafka.sh create-topic DIR NAME PARTITIONS create a topic and wait until every partition has a leader
#   kafka.sh bootstrap DIR                    print host:port of the broker in DIR
#
# Environment:
#   FENGHUO_CACHE                 cache root (default ~/.cache/fenghuo)
#   FENGHUO_KAFKA_VERSION         Kafka version (default 3.9.1; must match what pom.xml can resolve)
#   FENGHUO_KAFKA_HEAP            broker -Xmx (default 512m)
#   FENGHUO_KAFKA_START_TIMEOUT   seconds to wait for readiness (default 60)
#   FENGHUO_OWNER_PID             if set, the broker is killed once this process is gone, so a
#                                 crashed test cannot leave a JVM behind
#
# Everything except the bootstrap address goes to stderr, so callers can capture stdout.
set -euo pipefail

SCRIPT_NAME=kafka.sh
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

KAFKA_VERSION=${FENGHUO_KAFKA_VERSION:-3.9.1}
CACHE=${FENGHUO_CACHE:-${HOME:-/root}/.cache/fenghuo}
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
HERE=$(cd "$(dirname "$0")" && pwd)
HEAP=${FENGHUO_KAFKA_HEAP:-512m}
START_TIMEOUT=${FENGHUO_KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=30
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java


usage() {
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
}

need() {
        command -v "$1" >/dev/null 2>&1 || die "$1 not found (${2:-install it})"
}

# Properties files and argv splitting treat blanks and backslashes specially;
# refusing them is simpler than quoting for three different parsers.
absdir() {
        case $1 in
        *[[:space:]\\]* | '') die "unsupported directory name: '$1'" ;;
        esac
        mkdir -p "$1"
        (cd "$1" && pwd)
}


# True when pid $1 is the broker started for $2 (guards against pid reuse).
is_broker() {
        alive "$1" && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF "$2/server.properties"
}



cmd_fetch() {
        [ -f "$LIBS/.complete" ] && return 0
        need "$JAVA" "Java 17 is required"
        need mvn "Maven is required for the first fetch"
        mkdir -p "$KAFKA_HOME"
        # Parallel test runs may fetch at once; the lock fd lives only in this
        # subshell so no broker JVM ever inherits it.
        (
                flock 9
                [ -f "$LIBS/.complete" ] && exit 0
                rm -rf "$LIBS" "$LIBS.tmp"
                echo "kafka.sh: fetching Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME" >&2
                set -- -B -q -Dstyle.color=never -f "$HERE/pom.xml" \
                        -Dmaven.repo.local="$CACHE/m2" \
                        -Dkafka.version="$KAFKA_VERSION" \
                        dependency:copy-dependencies -DincludeScope=runtime \
                        -DoutputDirectory="$LIBS.tmp"
                # Prefer the local Maven repository so a wiped libs/ rebuilds offline.
                # Debian's Maven 3.8 emits colour codes even in batch mode.
                mvn -o "$@" >/dev/null 2>&1 ||
                        mvn "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 ||
                        die "Maven could not fetch Kafka $KAFKA_VERSION"
                [ -f "$LIBS.tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
                touch "$LIBS.tmp/.complete"
                mv "$LIBS.tmp" "$LIBS"
        ) 9>"$KAFKA_HOME/.lock"
}

write_log4j() {
        cat >"$1/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$1/kafka.log
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
        # Short-lived tools: warnings only, on stderr.
        cat >"$1/tools-log4j.properties" <<EOF
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

write_config() {
        local dir=$1 port=$2 cport=$3
        cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# The defaults (50 partitions each) make the first consumer group take seconds.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF
        echo "127.0.0.1:$port" >"$dir/bootstrap"
}

run_java() {
        local dir=$1
        shift
        "$JAVA" -XX:TieredStopAtLevel=1 -Xmx256m -Djava.awt.headless=true \
                -Dlog4j.configuration="file:$dir/tools-log4j.properties" -cp "$LIBS/*" "$@"
}

format_storage() {
        local dir=$1 id
        # A Kafka Uuid is 16 random bytes in unpadded base64url; making it here
        # saves a JVM start for `StorageTool random-uuid`.
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        rm -rf "$dir/data"
        # --cluster-id=: an id starting with '-' must not read as an option.
        run_java "$dir" kafka.tools.StorageTool format --cluster-id="$id" -c "$dir/server.properties" \
                >"$dir/format.log" 2>&1 || {
                cat "$dir/format.log" >&2
                die "formatting $dir/data failed"
        }
}

launch() {
        local dir=$1 pid
        # The readiness check greps the log, so a line from a previous run must not be in it.
        [ -f "$dir/kafka.log" ] && mv -f "$dir/kafka.log" "$dir/kafka.log.prev"
        "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
                -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
                -Dlog4j.configuration="file:$dir/log4j.properties" -Dkafka.logs.dir="$dir" \
                -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
                </dev/null >"$dir/kafka.out" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/kafka.pid"
}

metadata_ok() {
        local out
        command -v kcat >/dev/null 2>&1 || return 0
        out=$(timeout 10 kcat -b "$1" -L -m 5 2>/dev/null) || return 1
        case $out in
        *"broker 1 at 127.0.0.1:"*) return 0 ;;
        esac
        return 1
}

# 0 ready, 1 the JVM died, 2 deadline passed.
wait_ready() {
        local dir=$1 pid bootstrap deadline
        pid=$(cat "$dir/kafka.pid")
        bootstrap=$(cat "$dir/bootstrap")
        deadline=$((SECONDS + START_TIMEOUT))
        while :; do
                alive "$pid" || return 1
                if grep -q 'Kafka Server started' "$dir/kafka.log" 2>/dev/null && metadata_ok "$bootstrap"; then
                        return 0
                fi
                [ "$SECONDS" -ge "$deadline" ] && return 2
                sleep 0.2
        done
}

kill_pid() {
        local pid=$1 deadline
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT))
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.1
        done
        if alive "$pid"; then
                echo "kafka.sh: pid $pid ignored TERM for ${STOP_TIMEOUT}s, sending KILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 10))
                while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
                        sleep 0.1
                done
        fi
        ! alive "$pid"
}

start_watchdog() {
        local dir=$1 owner=${FENGHUO_OWNER_PID:-} pid
        [ -n "$owner" ] || return 0
        pid=$(cat "$dir/kafka.pid")
        (
                # stop TERMs us; take the sleep along so nothing outlives the server.
                nap=
                trap 'kill $nap 2>/dev/null; exit 0' TERM
                while alive "$owner" && is_broker "$pid" "$dir"; do
                        sleep 1 &
                        nap=$!
                        wait "$nap"
                done
                is_broker "$pid" "$dir" && kill_pid "$pid"
                rm -f "$dir/kafka.pid"
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/watchdog.pid"
}

fail_start() {
        local dir=$1 why=$2 pid
        pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && is_broker "$pid" "$dir"; then
                kill_pid "$pid" || true
        fi
        rm -f "$dir/kafka.pid"
        # The cause is usually one ERROR line buried under a page of shutdown noise.
        {
                echo "kafka.sh: broker in $dir $why; first errors, then the end of its logs:"
                grep -E '^\[[^]]*\] (ERROR|FATAL) ' "$dir/kafka.log" 2>/dev/null | head -n 5 || true
                echo "..."
                tail -n 20 "$dir/kafka.log" 2>/dev/null || true
                tail -n 20 "$dir/kafka.out" 2>/dev/null || true
        } >&2
        exit 1
}

cmd_start() {
        [ $# -eq 1 ] || usage
        local dir attempt rc pid
        dir=$(absdir "$1")
        pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && is_broker "$pid" "$dir"; then
                die "a broker is already running in $dir (pid $pid)"
        fi
        cmd_fetch
        need "$JAVA" "Java 17 is required"
        write_log4j "$dir"

        # A formatted DIR is restarted on its old ports, so a test can bounce
        # the broker under a client that keeps its bootstrap address.
        if [ -f "$dir/server.properties" ] && [ -f "$dir/data/meta.properties" ]; then
                launch "$dir"
                rc=0
                wait_ready "$dir" || rc=$?
                case $rc in
                0) ;;
                1) fail_start "$dir" "exited during restart" ;;
                *) fail_start "$dir" "was not ready after ${START_TIMEOUT}s" ;;
                esac
        else
                # Another process may grab a port between our check and the
                # broker's bind; a fresh pair of ports usually fixes that.
                for attempt in 1 2 3; do
                        local port cport
                        port=$(pick_port)
                        cport=$(pick_port "$port")
                        write_config "$dir" "$port" "$cport"
                        format_storage "$dir"
                        launch "$dir"
                        rc=0
                        wait_ready "$dir" || rc=$?
                        [ "$rc" -eq 0 ] && break
                        if [ "$rc" -eq 1 ] && [ "$attempt" -lt 3 ] &&
                                grep -q 'Address already in use' "$dir/kafka.log" "$dir/kafka.out" 2>/dev/null; then
                                echo "kafka.sh: port clash, retrying with new ports" >&2
                                rm -f "$dir/kafka.pid"
                                continue
                        fi
                        [ "$rc" -eq 1 ] && fail_start "$dir" "exited during start-up"
                        fail_start "$dir" "was not ready after ${START_TIMEOUT}s"
                done
        fi
        start_watchdog "$dir"
        cat "$dir/bootstrap"
}

cmd_stop() {
        [ $# -eq 1 ] || usage
        local dir pid wd
        dir=$(absdir "$1")
        wd=$(cat "$dir/watchdog.pid" 2>/dev/null || true)
        if [ -n "$wd" ] && alive "$wd"; then
                kill -TERM "$wd" 2>/dev/null || true
        fi
        rm -f "$dir/watchdog.pid"
        pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && is_broker "$pid" "$dir"; then
                kill_pid "$pid" || die "broker pid $pid in $dir would not die"
        fi
        rm -f "$dir/kafka.pid"
}

cmd_bootstrap() {
        [ $# -eq 1 ] || usage
        local dir
        dir=$(absdir "$1")
        [ -f "$dir/bootstrap" ] || die "no broker was started in $dir"
        cat "$dir/bootstrap"
}

topic_ready() {
        local out
        out=$(timeout 10 kcat -b "$1" -L -t "$2" -m 5 2>/dev/null) || return 1
        [ "$(printf '%s\n' "$out" | grep -cE '^ +partition [0-9]+, leader [0-9]+,')" -eq "$3" ] &&
                ! printf '%s\n' "$out" | grep -q 'Error'
}

cmd_create_topic() {
        [ $# -eq 3 ] || usage
        local dir name parts bootstrap deadline
        dir=$(absdir "$1")
        name=$2
        parts=$3
        [[ $name =~ ^[A-Za-z0-9._-]{1,249}$ ]] || die "invalid topic name: '$name'"
        [[ $parts =~ ^[1-9][0-9]{0,3}$ ]] || die "partitions must be 1..9999, got '$parts'"
        bootstrap=$(cmd_bootstrap "$dir")
        cmd_fetch
        run_java "$dir" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
                --create --topic "$name" --partitions "$parts" --replication-factor 1 >&2 ||
                die "could not create topic $name"
        # The controller has the topic now; wait for the broker to serve it too.
        command -v kcat >/dev/null 2>&1 || return 0
        deadline=$((SECONDS + 30))
        until topic_ready "$bootstrap" "$name" "$parts"; do
                [ "$SECONDS" -ge "$deadline" ] && die "topic $name has no leaders after 30s"
                sleep 0.2
        done
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
fetch) cmd_fetch ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
create-topic) cmd_create_topic "$@" ;;
bootstrap) cmd_bootstrap "$@" ;;
*) usage ;;
esac
