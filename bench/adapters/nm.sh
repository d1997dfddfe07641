#!/bin/sh
# nm adapter for the supervisor benchmark harness of this directory (bench/README.md).
#   nm.sh check | start WORKDIR N CHILD | stop WORKDIR ROOTPID
# Uses the release binaries of this repository (NM_DAEMON / NM_CLI override them).
# Each of the N servers runs CHILD with restart_delay 0 and a restart budget that the
# benchmark cannot spend; the daemon's environment (BENCH_FIFO) reaches every server.
root=$(cd "$(dirname "$0")/../.." && pwd)
NM_DAEMON=${NM_DAEMON:-$root/target/release/nm-daemon}
NM_CLI=${NM_CLI:-$root/target/release/nm-cli}
case "$1" in
check) [ -x "$NM_DAEMON" ] && [ -x "$NM_CLI" ] ;;
start)
    work=$2 n=$3 child=$4
    {
        printf 'node = "bench"\ndata_dir = "%s/data"\nlisten = "127.0.0.1:0"\n\n' "$work"
        i=0
        while [ "$i" -lt "$n" ]; do
            if [ "${BENCH_WRAP:-}" = sh ]; then
                printf '[[server]]\nname = "s%s"\ncommand = ["/bin/sh", "-c", "exec %s"]\n' "$i" "$child"
            else
                printf '[[server]]\nname = "s%s"\ncommand = ["%s"]\n' "$i" "$child"
            fi
            printf 'restart_max = 1000000000\nrestart_delay = 0\nstop_timeout = "5s"\n\n'
            i=$((i + 1))
        done
    } > "$work/nm.toml"
    NM_LOG=${NM_LOG:-warn} exec "$NM_DAEMON" --config "$work/nm.toml" ;;
stop) "$NM_CLI" --socket "$2/data/nm.sock" shutdown --stop-servers >/dev/null ;;
*) exit 64 ;;
esac
