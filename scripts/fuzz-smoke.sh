#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target of fuzz/ for a bounded time each
# (FUZZ_SECONDS, 60 by default), starting from fuzz/seeds (configurations
# captured from the integration tests, real kernel netlink and nftables
# replies, host-local state files, CNI_ARGS, results, a DHCP offer).
#
#   scripts/fuzz-smoke.sh                 all targets, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh config result
#   scripts/fuzz-smoke.sh --reseed        regenerate fuzz/seeds/{netlink,nft} from a live namespace (root)
#
# Needs the nightly toolchain (cargo-fuzz builds with -Zsanitizer=address) and
# installs cargo-fuzz when it is missing. The `config` target runs whole
# plugins: it moves itself into new network and mount namespaces in which
# everything but a scratch /tmp and fuzz/ is read-only (as root; otherwise in a
# user namespace of its own), so it never touches the machine.
# A failure leaves the input in fuzz/artifacts/<target>/; the script prints
# how to replay it, and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-60}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ "${1:-}" = "--reseed" ]; then
  [ "$(id -u)" = 0 ] || { echo "fuzz-smoke: --reseed needs root (it builds a namespace)" >&2; exit 1; }
  cargo build --bin cnibox
  bin=$PWD/target/debug/cnibox
  [ -n "${CARGO_TARGET_DIR:-}" ] && bin=$CARGO_TARGET_DIR/debug/cnibox
  tmp=$(mktemp -d)
  node=cnibox-seed-node-$$ ctr=cnibox-seed-ctr-$$
  trap 'ip netns del $node 2>/dev/null; ip netns del $ctr 2>/dev/null; rm -rf "$tmp"' EXIT
  ip netns add "$node"; ip netns add "$ctr"; ip -n "$node" link set lo up
  mkdir -p "$tmp/bin"; for p in bridge host-local portmap firewall; do ln -s "$bin" "$tmp/bin/$p"; done
  run() { CNI_COMMAND=ADD CNI_CONTAINERID=seed1 CNI_NETNS=/run/netns/$ctr CNI_IFNAME=eth0 CNI_PATH=$tmp/bin ip netns exec "$node" "$tmp/bin/$1"; }
  res=$(echo '{"cniVersion":"1.0.0","name":"seednet","type":"bridge","bridge":"cbr0","isDefaultGateway":true,"ipMasq":true,"macspoofchk":true,
    "ipam":{"type":"host-local","dataDir":"'"$tmp"'/ipam","ranges":[[{"subnet":"10.77.0.0/24"}],[{"subnet":"fd77::/64"}]]}}' | run bridge)
  echo '{"cniVersion":"1.0.0","name":"seednet","type":"portmap","prevResult":'"$res"',"runtimeConfig":{"portMappings":[
    {"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"10.77.0.1"}]}}' | run portmap >/dev/null
  echo '{"cniVersion":"1.0.0","name":"seednet","type":"firewall","ingressPolicy":"same-bridge","prevResult":'"$res"'}' | run firewall >/dev/null
  ip netns exec "$node" tc qdisc add dev cbr0 root tbf rate 1mbit burst 32kbit latency 400ms
  ip -n "$node" rule add from 10.77.0.5 table 100
  ip netns exec "$node" python3 fuzz/seedgen.py fuzz/seeds
  exit 0
fi

all=$(cargo +nightly fuzz list)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<< "$(echo $all)"

cargo +nightly fuzz build -O
logs=$(mktemp -d)
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  if [ -d "fuzz/seeds/$t" ]; then cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true; fi
  printf 'fuzz %-10s %3s s ... ' "$t" "$secs"
  if cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    echo "ok: $runs inputs, corpus $(ls "fuzz/corpus/$t" | wc -l)"
  else
    echo "FAILED"
    grep -E 'panicked at|^thread|SUMMARY|Test unit written|refusing' "$logs/$t.log" | head -8 | sed 's/^/    /'
    crash=$(grep -o 'fuzz/artifacts/[^ ]*' "$logs/$t.log" | tail -1 || true)
    [ -n "$crash" ] && echo "    replay: cargo +nightly fuzz run -O $t $crash"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: failed: ${failed[*]} (logs in $logs)" >&2
  exit 1
fi
rm -rf "$logs"
echo "fuzz-smoke: ${#targets[@]} targets, ${secs} s each, no failure"
