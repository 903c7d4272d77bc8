# Sourced by spark-test.sh and spark-bench.sh: a cached venv with pyspark, the plugin
# jar built against it, and two sluice-server processes sharing one cluster token and
# certificate, on loopback or (SLUICE_SPARK_NETNS=1) in a network namespace of their
# own. Sets: venv, jar, work, port_a, port_b, server, cluster_args (the plugin jar, both
# servers, token, trust and a work dir, as the Python drivers take them), in_client (the
# command prefix that runs a driver where Spark must run), a script $work/b/restart
# that starts server b again after a test killed it, and a cleanup trap that stops the
# servers and removes $work and the namespaces.
#
#   SLUICE_SPARK_VERSION=3.5.9 (default) or 4.1.4, 4.3.0: the pyspark release used.
#   SLUICE_SPARK_NETNS=1: servers and Spark in two namespaces joined by a veth pair.

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
server="$(scripts/build-binaries.sh)/sluice-server"

work="$(mktemp -d)"
pids=()
netns=()
cleanup() {
  # The servers started here, and any a test restarted (their pid files).
  for p in "${pids[@]}" $(cat "$work"/*/pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${netns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# SLUICE_SPARK_NETNS=1 (root only): the servers run in a network namespace of their
# own and Spark (driver and executors) in another, joined by a veth pair at MTU 1500,
# so executors reach their shuffle servers over a real device, as on a cluster. The
# addresses (10.213.0.1 and .2) exist only inside the two namespaces.
host=127.0.0.1
in_server=()
in_client=()
if [ "${SLUICE_SPARK_NETNS:-0}" = 1 ]; then
  export PATH="$PATH:/usr/sbin:/sbin"
  ns_c="sluice-$$-spark-c"
  ns_s="sluice-$$-spark-s"
  ip netns add "$ns_c"
  netns+=("$ns_c")
  ip netns add "$ns_s"
  netns+=("$ns_s")
  ip link add name veth0 netns "$ns_c" mtu 1500 type veth peer name veth0 netns "$ns_s" mtu 1500
  ip -n "$ns_c" addr add 10.213.0.1/30 dev veth0
  ip -n "$ns_s" addr add 10.213.0.2/30 dev veth0
  for ns in "$ns_c" "$ns_s"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set veth0 up
  done
  host=10.213.0.2
  in_server=(ip netns exec "$ns_s")
  in_client=(ip netns exec "$ns_c")
  echo "servers in network namespace $ns_s at $host, Spark in $ns_c (veth, MTU 1500)"
fi

free_udp_port() {
  python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Server a generates the cluster token and certificate; server b shares them.
start_server() { # name port extra-toml
  local dir="$work/$1"
  mkdir -p "$dir"
  # A lost replica is given up after 4 s (not 10): the tests kill servers.
  printf 'listen = "%s:%s"\ndata_dir = "%s/data"\n%s\n[storage]\nmemory_budget = "256MiB"\n[admin]\nlisten = "127.0.0.1:0"\n[replication]\npeer_timeout = "4s"\n' \
    "$host" "$2" "$dir" "$3" > "$dir/config.toml"
  "${in_server[@]}" "$server" --config "$dir/config.toml" > "$dir/server.log" 2>&1 &
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
# Clients check the certificate against the address they dial: it names the servers'.
start_server a "$port_a" "[tls]
server_names = [\"localhost\", \"$host\"]"
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
${in_server[*]+$(printf '%q ' "${in_server[@]}")}"$server" --config "$work/b/config.toml" >> "$work/b/server.log" 2>&1 &
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
  --servers "$host:$port_a,$host:$port_b"
  --token-file "$work/a/data/cluster-token"
  --trust-file "$work/a/data/tls/cert.pem"
  --work-dir "$work/spark"
)

server_logs() {
  for s in a b; do echo "--- server $s log (tail)"; tail -n 30 "$work/$s/server.log"; done
}
