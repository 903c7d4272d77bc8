#!/usr/bin/env bash
# Builds everything the scripts run: the Spark plugin's native library, the server and
# the benchmark, in ONE cargo invocation. Cargo unifies dependency features per
# invocation, so building them one by one compiled arrow, quinn, tokio and the rest up
# to three times (about 2 min each on 2 cores); together they build once, and every
# later call is a no-op. Prints the directory the binaries are in.
#
#   SLUICE_BUILD_PROFILE=release (default) or debug. The test command uses debug: its
#   dependencies are the ones `cargo test` just built, where a release build would
#   compile them all again (3.5 min from cold). Benchmarks use release.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
case "${SLUICE_BUILD_PROFILE:-release}" in
  release) cargo build --release --locked -p sluice-jni -p sluice-server -p sluice-bench >&2 ;;
  debug) cargo build --locked -p sluice-jni -p sluice-server -p sluice-bench >&2 ;;
  *) echo "SLUICE_BUILD_PROFILE must be release or debug" >&2; exit 2 ;;
esac
echo "$CARGO_TARGET_DIR/${SLUICE_BUILD_PROFILE:-release}"
