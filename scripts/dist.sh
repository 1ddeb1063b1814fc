#!/usr/bin/env bash
# make dist: the release artifacts, one static cnibox per Linux target.
#
#   ./scripts/dist.sh                 every target (scripts/cross.sh ALL_TARGETS)
#   DIST_TARGETS="aarch64-unknown-linux-musl" ./scripts/dist.sh
#   ./scripts/dist.sh --check TRIPLE  rebuild TRIPLE from a fresh clone of HEAD
#                                     in another directory and compare its
#                                     tarball byte for byte with dist/'s
#
# Each dist/cnibox-VERSION-linux-ARCH.tar.gz holds cnibox-VERSION-linux-ARCH/
# with the binary, one symlink per plugin (as `cnibox --help` lists them),
# LICENSE, README (install on k3s, k0s or /opt/cni/bin) and systemd/ (the
# DHCP daemon's units from contrib/systemd/); dist/SHA256SUMS covers them.
#
# The binaries are the tiny build (nightly build-std, Makefile TINYFLAGS):
# DIST_KIND=stable gives the stable toolchain's instead. Statically linked
# everywhere; static-pie on x86_64 only, where Rust's musl target has it
# (the other musl targets link a plain static executable).
#
# Reproducible: the same commit gives the same bytes, wherever the tree is
# checked out: paths in the binary are remapped (scripts/cross.sh), the
# tarball is sorted, owned by 0:0, every mtime is the commit's time
# (SOURCE_DATE_EPOCH), gzip stores no name or time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/cross.sh
TINYFLAGS=${TINYFLAGS:-$(sed -n 's/^TINYFLAGS *:= *//p' Makefile)}
KIND=${DIST_KIND:-tiny}
OUT=${DIST_DIR:-$ROOT/dist}
TARGETS=${DIST_TARGETS:-$ALL_TARGETS}

say() { echo "dist: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "${1:-}" = --check ]; then
  t=${2:?--check needs a target triple}
  arch=$(arch_of "$t")
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  tgz=cnibox-$version-linux-$arch.tar.gz
  [ -f "$OUT/$tgz" ] || die "no $OUT/$tgz to compare with (run make dist first)"
  # A clean clone of the same commit, in another directory, with its own
  # target dir but the same cross sysroot.
  other=$ROOT/target/repro/src
  rm -rf "$ROOT/target/repro" && mkdir -p "$ROOT/target/repro"
  git clone -q --no-local "$ROOT" "$other"
  # DIST_CHECK_COMMIT: the commit dist/ was built from, when HEAD has moved on since
  git -C "$other" checkout -q "${DIST_CHECK_COMMIT:-$(git rev-parse HEAD)}"
  [ -z "$(git status --porcelain --untracked-files=no)" ] ||
    say "note: this tree has uncommitted changes; the clone has only HEAD, so they may differ"
  mkdir -p "$other/contrib"
  [ -d contrib/systemd ] && ! [ -d "$other/contrib/systemd" ] && cp -r contrib/systemd "$other/contrib/"
  [ -f LICENSE ] && ! [ -f "$other/LICENSE" ] && cp LICENSE "$other/"
  CROSS_ROOT=$ROOT/target/cross DIST_DIR=$ROOT/target/repro/dist DIST_TARGETS=$t DIST_KIND=$KIND "$other/scripts/dist.sh"
  if cmp "$OUT/$tgz" "$ROOT/target/repro/dist/$tgz"; then
    say "reproducible: $tgz is byte for byte the same from $other ($(sha256sum < "$OUT/$tgz" | cut -c1-16))"
    rm -rf "$ROOT/target/repro"
    exit 0
  fi
  die "NOT reproducible: $OUT/$tgz differs from target/repro/dist/$tgz"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
[ -f LICENSE ] || die "no LICENSE in the tree"
units=$(ls contrib/systemd/* 2>/dev/null || true)
[ -n "$units" ] || die "contrib/systemd/ holds no systemd units for the DHCP daemon: nothing to ship"

mkdir -p "$OUT" "$ROOT/target/dist/log"
# Builds run DIST_JOBS (2) at a time, each in its own target dir: the long
# tail of each (fat LTO into one codegen unit) runs on one core.
build() {
  local t=$1 t0=$SECONDS
  rm -f "$ROOT/target/dist/log/$t.ok"
  cross_env "$t" "$KIND" || return 1
  say "$t ($KIND): $CARGO build"
  # shellcheck disable=SC2086
  if nice $CARGO build --release --locked --target "$t" --target-dir "$ROOT/target/dist/$KIND/$t" --bin cnibox \
    >"$ROOT/target/dist/log/$t.log" 2>&1; then
    say "$t built in $((SECONDS - t0)) s"
    touch "$ROOT/target/dist/log/$t.ok"
  else
    tail -30 "$ROOT/target/dist/log/$t.log" >&2
    say "$t: build failed (log: target/dist/log/$t.log)"
    return 1
  fi
}
for t in $TARGETS; do
  while [ "$(jobs -rp | wc -l)" -ge "${DIST_JOBS:-2}" ]; do wait -n || true; done
  build "$t" &
done
wait
for t in $TARGETS; do [ -f "$ROOT/target/dist/log/$t.ok" ] || die "$t did not build"; done

for t in $TARGETS; do
  arch=$(arch_of "$t")
  rm -f "$OUT/cnibox-$version-linux-$arch.tar.gz"
  cross_env "$t" "$KIND"
  bin=$ROOT/target/dist/$KIND/$t/$t/release/cnibox
  # static: no program interpreter; static-pie shows as a DYN executable without one
  ! readelf -lW "$bin" | grep -q 'Requesting program interpreter' || die "$bin is dynamically linked"
  link=static
  readelf -hW "$bin" | grep -q 'Type: *DYN' && link=static-pie
  plugins=$(${QEMU:+$QEMU} "$bin" --help | sed -n 's/^plugins: //p')
  [ -n "$plugins" ] || die "$bin --help lists no plugins"
  ver=$(${QEMU:+$QEMU} "$bin" --version)
  case $ver in *"$t"*) ;; *) die "$bin --version does not name $t: $ver" ;; esac
  name=cnibox-$version-linux-$arch
  stage=$ROOT/target/dist/stage/$name
  rm -rf "$stage" && mkdir -p "$stage/systemd"
  install -m 0755 "$bin" "$stage/cnibox"
  for p in $plugins; do ln -s cnibox "$stage/$p"; done
  install -m 0644 LICENSE "$stage/LICENSE"
  for u in $units; do install -m 0644 "$u" "$stage/systemd/"; done
  cat > "$stage/README" <<EOF
cnibox $version for Linux $arch ($t): CNI plugins in one static binary.
$ver

cnibox answers as the plugin its name says: the links here, one per plugin,
make it a drop-in for the reference plugins:
  $plugins

/opt/cni/bin (containerd, CRI-O, Podman, k0s):
  sudo install -d /opt/cni/bin && sudo cp -a cnibox $plugins /opt/cni/bin/

k3s looks for its plugins in its data dir, where each name is a link to its
bundled cni binary; point those names at cnibox (again after a k3s upgrade):
  sudo install -m 0755 cnibox /usr/local/lib/cnibox
  for d in /var/lib/rancher/k3s/data/cni /var/lib/rancher/k3s/data/current/bin; do
    [ -d "\$d" ] || continue
    for p in bandwidth bridge firewall flannel host-local loopback portmap; do
      sudo ln -sf /usr/local/lib/cnibox "\$d/\$p"
    done
  done
k3s's own conflist, host-local's data and flannel's files stay as they are.

The DHCP IPAM plugin needs its daemon: systemd/ has the units
  cp systemd/* /etc/systemd/system/ && systemctl daemon-reload
  systemctl enable --now cnibox-dhcp.socket

License: Apache-2.0 (LICENSE). Checksums: SHA256SUMS next to the tarball.
EOF
  chmod 0644 "$stage/README"
  # every file and link dated at the commit
  find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  (cd "$ROOT/target/dist/stage" &&
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
      --format=gnu -cf - "$name" | gzip -9 -n > "$OUT/$name.tar.gz")
  say "$name.tar.gz: cnibox $(stat -c %s "$bin") bytes, $link"
done
(cd "$OUT" && sha256sum cnibox-*.tar.gz | LC_ALL=C sort -k2 > SHA256SUMS)
say "$OUT/SHA256SUMS:"
cat "$OUT/SHA256SUMS"
