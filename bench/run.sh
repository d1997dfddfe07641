#!/bin/sh
# The benchmark behind docs/benchmarks.md: nm beside the fork+exec floor and the peer supervisors
# (runit, s6, daemontools, supervisord), in the same runs, with the harness in this directory
# (bench.py, src/, adapters/; README.md). It builds into bench/bin and writes bench/results.
# Run as root on an otherwise idle machine; about 40 minutes.
#   bench/run.sh [--install-peers] [--quick]
# --install-peers  install the missing peers first (root: apt-get install runit s6 daemontools,
#                  pip install supervisor); a peer that is not installed is skipped by bench.py
# --quick          a smoke run (a few cycles, 20 servers, 2 s windows) to check the harness works;
#                  its figures mean nothing
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
install=no quick=no
for a in "$@"; do
    case "$a" in
    --install-peers) install=yes ;;
    --quick) quick=yes ;;
    *) echo "usage: bench/run.sh [--install-peers] [--quick]" >&2; exit 64 ;;
    esac
done
if [ "$install" = yes ]; then
    [ "$(id -u)" = 0 ] || { echo "--install-peers needs root" >&2; exit 1; }
    missing=
    command -v runsvdir >/dev/null || missing="$missing runit"
    command -v s6-svscan >/dev/null || missing="$missing s6"
    command -v svscan >/dev/null || missing="$missing daemontools"
    if [ -n "$missing" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
    command -v supervisord >/dev/null || python3 -m pip install -q supervisor
fi
cargo build --release --manifest-path "$repo/Cargo.toml" -p nm-daemon -p nm-cli
cd "$repo/bench"
make -s
peers="runit s6 daemontools"
if [ "$quick" = yes ]; then
    ./bench.py restart --cycles 5 --warmup 1 --settle-ms 100 floor-spawn floor-fork nm
    ./bench.py idle --n 20 --window 2 --warm 1 floor-spawn $peers supervisord nm
    echo "results: $repo/bench/results"
    exit 0
fi
# 1. restart latency, >= 1000 cycles: nm against the floor (no 1 s throttle to dodge)
./bench.py restart --cycles 1000 --settle-ms 100 floor-spawn floor-fork nm
# 2. restart latency beside the peers; settle 1100 ms because runit/s6/daemontools restart at
#    once only if the service lived > 1 s
./bench.py restart --cycles 200 --settle-ms 1100 floor-spawn $peers nm
# 3. supervisord restarts on its 1 s main-loop tick: 50 cycles are plenty
./bench.py restart --cycles 50 --settle-ms 1100 floor-spawn supervisord nm
# 4. idle overhead with 200 and 1000 sleeping servers
./bench.py idle --n 200 1000 --window 30 --warm 10 floor-spawn $peers supervisord nm
echo "results: $repo/bench/results"
