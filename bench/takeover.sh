#!/bin/sh
# The takeover benchmark of docs/benchmarks.md: kill -9 / SIGSTOP of the active node manager and
# how long until the API answers again, beside a standby-less nm-daemon respawned at once.
#   bench/takeover.sh [--trials N] [--hung-trials N] [--servers N]
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$repo/Cargo.toml" --workspace --bins
NM_BIN_DIR="$repo/target/release" NM_LOG=warn exec "$repo/target/release/takeover-bench" "$@"
