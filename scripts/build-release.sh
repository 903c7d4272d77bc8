#!/usr/bin/env bash
# The release build of everything the scripts run: the Spark plugin's native library,
# the server and the benchmark, in ONE cargo invocation. Cargo unifies dependency
# features per invocation, so building them one by one compiled arrow, quinn, tokio and
# the rest up to three times (about 2 min each on 2 cores); together they build once,
# and every later call is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release --locked -p sluice-jni -p sluice-server -p sluice-bench
