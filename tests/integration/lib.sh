# Shared by kafka.sh and redis.sh (sourced, not run): process and port
# helpers for starting throwaway servers on free loopback ports.
# The sourcing script sets SCRIPT_NAME first.

die() {
        printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
        exit 1
}

# A zombie still answers kill -0, so look at the process state instead.
alive() {
        local st
        [ -r "/proc/$1/stat" ] || return 1
        st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
        case $st in
        Z* | X*) return 1 ;;
        esac
        return 0
}

# Any socket on the port, TIME_WAIT included: a fresh port must be free of all.
port_in_use() {
        local hex
        hex=$(printf '%04X' "$1")
        awk -v h="$hex" 'FNR > 1 { n = split($2, a, ":"); if (toupper(a[n]) == h) f = 1 } END { exit !f }' \
                /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Only a listening socket stops a restart on the same port: servers bind
# with SO_REUSEADDR, so the TIME_WAIT sockets their clients left behind do
# not.
port_listening() {
        local hex
        hex=$(printf '%04X' "$1")
        awk -v h="$hex" 'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); if (toupper(a[n]) == h) f = 1 } END { exit !f }' \
                /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Below the kernel's ephemeral range so outgoing connections never hold our
# port; never $1 (a port the caller already took).
pick_port() {
        local p _
        for _ in $(seq 1 200); do
                p=$((20000 + RANDOM % 12000))
                [ "$p" = "${1:-}" ] && continue
                port_in_use "$p" || {
                        echo "$p"
                        return 0
                }
        done
        die "no free TCP port found"
}
