#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build and test cnibox:
# the musl target for the static build, the test oracles (iproute2,
# nftables, ping, strace, python3), dnsmasq as a real DHCP server, Go with
# Debian's libcni sources (the interop tests build a cnitool from them), and
# Debian's reference CNI plugins for the side-by-side tests and benchmarks.
# Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v bridge >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v strace >/dev/null || need+=(strace)
command -v python3 >/dev/null || need+=(python3)
command -v tc >/dev/null || need+=(iproute2)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)              # a real DHCP server for the dhcp tests
command -v go >/dev/null || need+=(golang-go)                  # builds a cnitool on Debian's libcni
[ -d /usr/share/gocode/src/github.com/containernetworking/cni ] || need+=(golang-github-appc-cni-dev)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
# CI checks formatting and lints before the tests.
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add $c
done
echo "setup: ok"
