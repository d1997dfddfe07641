#!/bin/sh
# The benchmark behind docs/benchmarks.md: nm beside the fork+exec floor and the peer
# supervisors, in the same runs, with the harness of ../shared/bench (copied, since shared/ is
# read-only). Run as root on an otherwise idle machine; about 40 minutes.
#   bench/run.sh [HARNESS_COPY_DIR]
# Peers: apt-get install -y runit s6 daemontools && pip install supervisor
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
harness=${1:-$(mktemp -d)/bench}
[ -d "$harness" ] || cp -r "$repo/../shared/bench" "$harness"
chmod -R u+w "$harness"
cargo build --release --manifest-path "$repo/Cargo.toml" -p nm-daemon -p nm-cli
nm="$repo/bench/adapters/nm.sh"
cd "$harness"
make -s
# 1. restart latency, >= 1000 cycles: nm against the floor (no 1 s throttle to dodge)
./bench.py restart --cycles 1000 --settle-ms 100 floor-spawn floor-fork "$nm"
# 2. restart latency beside the peers; settle 1100 ms because runit/s6/daemontools restart at
#    once only if the service lived > 1 s
./bench.py restart --cycles 200 --settle-ms 1100 floor-spawn runit s6 daemontools "$nm"
# 3. supervisord restarts on its 1 s main-loop tick: 50 cycles are plenty
./bench.py restart --cycles 50 --settle-ms 1100 floor-spawn supervisord "$nm"
# 4. idle overhead with 200 and 1000 sleeping servers
./bench.py idle --n 200 1000 --window 30 --warm 10 floor-spawn runit s6 daemontools supervisord "$nm"
echo "results: $harness/results"
