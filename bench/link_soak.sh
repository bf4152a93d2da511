#!/usr/bin/env bash
# Soak benchmark of crash-safe delivery (tests/examples/link_soak.rs): 1,000 messages through
# `tenbit send --spool --daemon` and `tenbit-edge listen --state` over a pty cable with 10%
# packet loss each way, while either side is killed with SIGKILL every 2-6 s. Prints
# delivered / duplicated / lost (target 1000 / 0 / 0) and bytes on the cable per message.
#
#   bench/link_soak.sh [--messages N] [--loss PERCENT] [--seed S] [--limit SECONDS] [--no-kill]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
cargo build --release --quiet -p tenbit-tests --example link_soak
exec target/release/examples/link_soak "$@"
