# Sourced by spark-test.sh and spark-bench.sh: a cached venv with pyspark, the plugin
# jar built against it, and two sluice-server processes on loopback sharing one cluster
# token and certificate. Sets: venv, jar, work, port_a, port_b, server, cluster_args (the
# plugin jar, both servers, token, trust and a work dir, as the Python drivers take them),
# a script $work/b/restart that starts server b again after a test killed it, and a
# cleanup trap that stops the servers and removes $work.
#
#   SLUICE_SPARK_VERSION=3.5.9 (default) or 4.1.4, 4.3.0: the pyspark release used.

cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
version="${SLUICE_SPARK_VERSION:-3.5.9}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
venv="$cache/venv-spark-${version%.*}"

if ! "$venv/bin/python" -c "import sys, pyspark; sys.exit(pyspark.__version__ != '$version')" 2>/dev/null; then
  echo "installing pyspark $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --cache-dir "$cache/pip" "pyspark==$version"
fi
pyspark_dir="$("$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

jar="$(jni/build-jar.sh "$pyspark_dir" | tail -1)"
scripts/build-release.sh
server="$CARGO_TARGET_DIR/release/sluice-server"

work="$(mktemp -d)"
pids=()
cleanup() {
  # The servers started here, and any a test restarted (their pid files).
  for p in "${pids[@]}" $(cat "$work"/*/pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_udp_port() {
  python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Server a generates the cluster token and certificate; server b shares them.
start_server() { # name port extra-toml
  local dir="$work/$1"
  mkdir -p "$dir"
  # A lost replica is given up after 4 s (not 10): the tests kill servers.
  printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/data"\n%s\n[storage]\nmemory_budget = "256MiB"\n[admin]\nlisten = "127.0.0.1:0"\n[replication]\npeer_timeout = "4s"\n' \
    "$2" "$dir" "$3" > "$dir/config.toml"
  "$server" --config "$dir/config.toml" > "$dir/server.log" 2>&1 &
  pids+=($!)
  echo $! > "$dir/pid"
}
wait_for() {
  for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2
  return 1
}

port_a="$(free_udp_port)"
port_b="$(free_udp_port)"
start_server a "$port_a" ""
wait_for "$work/a/data/tls/cert.pem"
wait_for "$work/a/data/cluster-token"
start_server b "$port_b" "cluster_token_file = \"$work/a/data/cluster-token\"
[tls]
cert = \"$work/a/data/tls/cert.pem\"
key = \"$work/a/data/tls/key.pem\""
sleep 1

# Starts server b again on its data directory (a test kills it), appending to its log,
# and returns once it listens.
cat > "$work/b/restart" <<EOF
#!/usr/bin/env bash
set -euo pipefail
before=\$(grep -c "sluice-server listening" "$work/b/server.log" || true)
"$server" --config "$work/b/config.toml" >> "$work/b/server.log" 2>&1 &
echo \$! > "$work/b/pid"
for _ in \$(seq 300); do
  [ "\$(grep -c "sluice-server listening" "$work/b/server.log")" -gt "\$before" ] && exit 0
  sleep 0.1
done
echo "server b did not come back" >&2
exit 1
EOF
chmod +x "$work/b/restart"

cluster_args=(
  --jar "$jar"
  --servers "127.0.0.1:$port_a,127.0.0.1:$port_b"
  --token-file "$work/a/data/cluster-token"
  --trust-file "$work/a/data/tls/cert.pem"
  --work-dir "$work/spark"
)

server_logs() {
  for s in a b; do echo "--- server $s log (tail)"; tail -n 30 "$work/$s/server.log"; done
}
