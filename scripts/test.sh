#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, every unit, property and
# end-to-end test (real QUIC on loopback), the Spark integration tests (pyspark is
# installed into a cached venv), and a short verified run of the benchmark.
#
# Build outputs are cached outside the repository (override with CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }

step "prerequisites: a JDK 17+ and Python 3 with venv (installed with apt as root)"
scripts/prerequisites.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# As root the network-path tests must run (namespaces, veth, tc, nft); elsewhere they
# print why they are skipped.
if [ "$(id -u)" -eq 0 ]; then export SLUICE_REQUIRE_NETNS=1; fi
cargo test --workspace --locked

# The Spark step and the benchmark step run debug binaries (scripts/build-binaries.sh):
# their dependencies are the ones cargo test built.
export SLUICE_BUILD_PROFILE=debug

step "Spark integration (real pyspark 3.5.9 and 4.3.0, local-cluster; SLUICE_SPARK_VERSIONS picks)"
scripts/spark-test.sh

step "sluice-bench --quick (end-to-end, verified)"
"$(scripts/build-binaries.sh)/sluice-bench" --quick
