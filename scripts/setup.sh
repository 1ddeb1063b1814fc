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

# --- make dist and make test-arch: the other architectures -------------------
# Foreign architectures for Debian's musl-dev:ARCH, kernels, busybox-static,
# iproute2 and nftables (the last three are only downloaded, by test-vm.sh).
arches_added=
foreign=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
for a in arm64 armhf s390x; do
  case $foreign in *" $a "*) ;; *) dpkg --add-architecture $a; arches_added=1 ;; esac
done
# Debian's musl source, built for riscv64 (bookworm has no riscv64 port).
src=/etc/apt/sources.list.d/cnibox-deb-src.sources
if [ ! -f "$src" ] && ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$src"
  arches_added=1
fi
cross=(qemu-user-static qemu-system-arm qemu-system-misc qemu-system-x86 busybox-static file binutils
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-riscv64-linux-gnu gcc-s390x-linux-gnu
  musl-dev:arm64 musl-dev:armhf musl-dev:s390x)
need=()
for p in "${cross[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ] || [ -n "$arches_added" ]; then
  apt-get update -qq
  [ ${#need[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# rustup's musl std where it has one (stable: aarch64, i686; nightly: x86_64,
# i686); nightly's rust-src builds std for the rest (scripts/cross.sh).
for t in aarch64-unknown-linux-musl i686-unknown-linux-musl; do
  rustup target list --installed | grep -qx $t || rustup target add $t
done
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' || rustup component add rust-src --toolchain nightly
for t in x86_64-unknown-linux-musl i686-unknown-linux-musl; do
  rustup target list --toolchain nightly --installed | grep -qx $t || rustup target add --toolchain nightly $t
done
# CI checks formatting and lints before the tests.
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add $c
done
echo "setup: ok"
