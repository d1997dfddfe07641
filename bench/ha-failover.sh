#!/bin/sh
# The HA failover benchmark of docs/benchmarks.md: power failure of the primary of a two-node HA
# pair on loopback until the HA-managed server runs on the secondary (fenced first).
#   bench/ha-failover.sh [--trials N] [--peer-timeout DURATION]
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$repo/Cargo.toml" --workspace --bins
NM_BIN_DIR="$repo/target/release" NM_LOG=warn exec "$repo/target/release/ha-failover-bench" "$@"
