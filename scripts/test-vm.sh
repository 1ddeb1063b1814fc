#!/usr/bin/env bash
# make test-vm: run the interface kinds this machine's kernel lacks (ipvlan,
# 802.1Q vlan, dummy, VRF, bridge VLAN filtering) for real, under Debian's own
# kernel in qemu with software emulation (TCG); and (make test-arch) the same
# plus bridge ipMasq, portmap, bandwidth, firewall and tuning under another
# architecture's Debian kernel.
#
#   [VM_ARCH=amd64|arm64|armhf|s390x] ./scripts/test-vm.sh [path/to/static/cnibox]
#
# For amd64 the oracles (iproute2's ip, bridge, tc; nft) are this machine's;
# for another architecture they are that architecture's Debian packages with
# their libraries and loader, unpacked into the initramfs, as is its
# busybox-static.
#
# Everything comes from Debian's registry: qemu-system-x86 is installed with
# apt-get; the kernel package (the one linux-image-amd64 depends on) and
# busybox-static are only downloaded and unpacked under target/vm (nothing is
# installed into /boot, no initramfs or bootloader hook runs). The guest gets
# a small initramfs: busybox, the cnibox binary with plugin links in
# /opt/cni/bin, iproute2's ip and bridge (copied from this machine, with their
# libraries) as the oracle, the kernel modules the tests need, /init and
# tests/vm/run.sh. The guest has no network card at all (-nic none); it never
# touches this machine's network.
#
# Exit status 0 only when the guest reports "N passed, 0 failed" with N > 0;
# that line is printed last, alone.
#
# Environment: VM_TIMEOUT (seconds, default 300), VM_MEM (MiB, default 512),
# VM_QUIET=1 prints only the summary (the console log is kept in target/vm).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${1:-target/x86_64-unknown-linux-musl/release/cnibox}
ARCH=${VM_ARCH:-amd64}
WORK=$ROOT/target/vm
[ "$ARCH" = amd64 ] || WORK=$ROOT/target/vm-$ARCH
DEBS=$ROOT/target/vm/debs
# per architecture: kernel metapackage, qemu, machine options, console, multiarch triplet
case $ARCH in
  amd64) KMETA=linux-image-amd64 QEMU=qemu-system-x86_64 QPKG=qemu-system-x86 MACH="-accel tcg" CONSOLE=ttyS0 TRIPLET=x86_64-linux-gnu ;;
  arm64) KMETA=linux-image-arm64 QEMU=qemu-system-aarch64 QPKG=qemu-system-arm MACH="-M virt -cpu max,pauth-impdef=on" CONSOLE=ttyAMA0 TRIPLET=aarch64-linux-gnu ;;
  armhf) KMETA=linux-image-armmp-lpae QEMU=qemu-system-arm QPKG=qemu-system-arm MACH="-M virt -cpu cortex-a15" CONSOLE=ttyAMA0 TRIPLET=arm-linux-gnueabihf ;;
  s390x) KMETA=linux-image-s390x QEMU=qemu-system-s390x QPKG=qemu-system-misc MACH="-M s390-ccw-virtio" CONSOLE=ttysclp0 TRIPLET=s390x-linux-gnu ;;
  *) echo "test-vm: VM_ARCH=$ARCH: not one of amd64 arm64 armhf s390x" >&2; exit 2 ;;
esac
[ "$ARCH" = amd64 ] || KMETA=$KMETA:$ARCH
TIMEOUT=${VM_TIMEOUT:-300}
MEM=${VM_MEM:-512}
# Modules loaded in the guest, dependencies added from each module's own
# "depends=" (the package ships no modules.dep: depmod runs at install time).
MODULES="veth macvlan ipvlan 8021q dummy vrf bridge tun"
# the nftables, tc and conntrack pieces of ipMasq, portmap, firewall, bandwidth
# (crc32c_generic first: libcrc32c, which nf_tables needs, asks the crypto API for it at load)
MODULES="crc32c_generic $MODULES nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib_ipv4 nft_fib_ipv6 nft_fib_inet nf_conntrack_netlink sch_tbf sch_ingress cls_u32 act_mirred ifb"
export DEBIAN_FRONTEND=noninteractive

say() { echo "test-vm: $*" >&2; }
die() { say "$*"; echo "0 passed, 1 failed"; exit 1; }
t0=$(date +%s)

[ -f "$BIN" ] || die "no binary at $BIN (run make build)"
if ldd "$BIN" 2>/dev/null | grep -q '=>'; then
  die "$BIN is dynamically linked; the guest has no libc for it (build the musl target)"
fi
mkdir -p "$WORK" "$DEBS"

apt_updated=
apt_update() {
  [ -n "$apt_updated" ] && return
  say "apt-get update"
  apt-get update -qq
  apt_updated=1
}

# --- qemu: installed from Debian's registry ---------------------------------
if ! command -v $QEMU >/dev/null; then
  [ "$(id -u)" = 0 ] || die "$QEMU missing and not root to install $QPKG"
  apt-cache show $QPKG >/dev/null 2>&1 || apt_update
  say "apt-get install $QPKG"
  apt-get install -y -qq --no-install-recommends $QPKG >/dev/null || { apt_update; apt-get install -y -qq --no-install-recommends $QPKG >/dev/null; }
fi
# The oracle in the guest: iproute2's ip -d and bridge vlan (busybox ip shows no link kind).
if ! command -v bridge >/dev/null || ! command -v ip >/dev/null; then
  [ "$(id -u)" = 0 ] || die "iproute2 missing"
  apt-cache show iproute2 >/dev/null 2>&1 || apt_update
  apt-get install -y -qq iproute2 >/dev/null
fi

# --- packages downloaded (not installed) into target/vm/debs ----------------
# fetch_deb PACKAGE[:ARCH]: path of its .deb in the cache, downloading it once.
fetch_deb() {
  local pkg=$1 name=${1%%:*} a f
  a=${1#*:}; [ "$a" = "$1" ] && a=amd64
  f=$(ls "$DEBS/${name}"_*_"$a".deb "$DEBS/${name}"_*_all.deb 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$f" ]; then
    apt-cache show "$pkg" >/dev/null 2>&1 || apt_update
    say "apt-get download $pkg"
    (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
      { apt_update; (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null); }
    f=$(ls "$DEBS/${name}"_*_"$a".deb "$DEBS/${name}"_*_all.deb 2>/dev/null | sort -V | tail -1)
  fi
  echo "$f"
}

# The versioned kernel package behind the metapackage.
kflavour=${KMETA%%:*}; kflavour=${kflavour#linux-image-}
kpkg=$(apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true)
if [ -z "$kpkg" ]; then
  # No package lists: use a cached kernel if there is one, else update and ask again.
  kpkg=$(ls "$DEBS" 2>/dev/null | sed -n "s/^\(linux-image-[0-9][^_]*-$kflavour\)_.*_${ARCH}\.deb\$/\1/p" | sort -V | tail -1 || true)
  if [ -z "$kpkg" ]; then
    apt_update
    kpkg=$(apt-cache depends "$KMETA" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
fi
[ -n "$kpkg" ] || die "cannot tell which package $KMETA depends on"
kpkg=${kpkg%%:*}
kver=${kpkg#linux-image-}
KDIR=$WORK/kernel-$kver

if [ ! -f "$KDIR/stamp" ] || [ "$(cat "$KDIR/stamp")" != "$MODULES" ]; then
  deb=$(fetch_deb "$kpkg:$ARCH")
  say "unpacking $(basename "$deb")"
  rm -rf "$KDIR" "$WORK/unpack"
  mkdir -p "$WORK/unpack" "$KDIR/modules"
  dpkg-deb -x "$deb" "$WORK/unpack"
  U=$WORK/unpack
  cp "$U/boot/vmlinuz-$kver" "$KDIR/vmlinuz"
  mdir=$U/lib/modules/$kver
  [ -d "$mdir" ] || die "no modules for $kver in $deb"
  # name (with _ for -) -> file
  declare -A kofile=()
  while IFS= read -r f; do
    b=$(basename "$f"); b=${b%%.ko*}; kofile[${b//-/_}]=$f
  done < <(find "$mdir/kernel" -name '*.ko*')
  declare -A seen=()
  order=()
  resolve() {
    local m=${1//-/_} f deps d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    f=${kofile[$m]:-}
    if [ -z "$f" ]; then
      # Built in: nothing to load.
      grep -q "/${m}.ko\$\|/${m//_/-}.ko\$" "$mdir/modules.builtin" && return 0
      die "module $m: not in $kpkg"
    fi
    case $f in
      *.ko) cp "$f" "$KDIR/modules/$m.ko" ;;
      *.ko.xz) xz -dc "$f" > "$KDIR/modules/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" > "$KDIR/modules/$m.ko" ;;
      *.ko.gz) gzip -dc "$f" > "$KDIR/modules/$m.ko" ;;
      *) die "module $m: unknown compression ($f)" ;;
    esac
    deps=$(tr '\0' '\n' < "$KDIR/modules/$m.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
    for d in $deps; do resolve "$d"; done
    order+=("$m")
  }
  for m in $MODULES; do resolve "$m"; done
  printf '%s\n' "${order[@]}" > "$KDIR/modules.list"
  rm -rf "$U"
  echo "$MODULES" > "$KDIR/stamp"
fi

# busybox-static: this machine's (for cpio) and the guest's
unpack_busybox() {
  local deb dir=$2
  deb=$(fetch_deb "$1")
  if [ ! -x "$dir/bin/busybox" ] || [ "$deb" -nt "$dir/bin/busybox" ]; then
    rm -rf "$dir"
    dpkg-deb -x "$deb" "$dir"
    touch "$dir/bin/busybox"
  fi
}
unpack_busybox busybox-static "$ROOT/target/vm/busybox-static"
HBB=$ROOT/target/vm/busybox-static/bin/busybox
BB=$HBB
QUSER=
if [ "$ARCH" != amd64 ]; then
  unpack_busybox "busybox-static:$ARCH" "$WORK/busybox-static"
  BB=$WORK/busybox-static/bin/busybox
  case $ARCH in arm64) QUSER=qemu-aarch64-static ;; armhf) QUSER=qemu-arm-static ;; *) QUSER=qemu-$ARCH-static ;; esac
  command -v $QUSER >/dev/null || die "$QUSER missing (scripts/setup.sh installs qemu-user-static)"
fi
# The guest's iproute2 and nftables with every library they load, from the
# architecture's own packages (the names are bookworm's; a missing library
# is found below by its soname and stops the run).
USERLAND="iproute2 nftables libnftables1 libbpf1 libelf1 libmnl0 libbsd0 libcap2 libc6 zlib1g libzstd1 libmd0 libdb5.3 libxtables12 libedit2 libnftnl11 libjansson4 libgmp10 libtinfo6"
UL=$WORK/userland
if [ "$ARCH" != amd64 ] && [ ! -f "$UL/stamp" ]; then
  rm -rf "$UL" && mkdir -p "$UL"
  # one apt-get for all that is not cached yet
  want=()
  for p in $USERLAND; do
    compgen -G "$DEBS/${p}_*_$ARCH.deb" >/dev/null || compgen -G "$DEBS/${p}_*_all.deb" >/dev/null || want+=("$p:$ARCH")
  done
  if [ ${#want[@]} -gt 0 ]; then
    say "apt-get download ${want[*]}"
    (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${want[@]}" >/dev/null) ||
      { apt_update; (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${want[@]}" >/dev/null); }
  fi
  for p in $USERLAND; do dpkg-deb -x "$(fetch_deb "$p:$ARCH")" "$UL"; done
  rm -rf "$UL/usr/share/doc" "$UL/usr/share/man" "$UL/usr/share/locale" "$UL/usr/share/lintian"
  # every NEEDED library of the tools must be there
  for t in ip bridge tc nft; do
    f=$UL/sbin/$t; [ -e "$f" ] || f=$UL/usr/sbin/$t
    [ -e "$f" ] || die "$t not in $ARCH's packages"
  done
  missing=$(for f in "$UL"/sbin/* "$UL"/usr/sbin/* "$UL"/lib/$TRIPLET/*.so* "$UL"/usr/lib/$TRIPLET/*.so*; do
    [ -f "$f" ] && readelf -d "$f" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'
  done | sort -u | while read -r so; do
    [ -e "$UL/lib/$TRIPLET/$so" ] || [ -e "$UL/usr/lib/$TRIPLET/$so" ] || echo "$so"
  done)
  [ -z "$missing" ] || die "$ARCH userland lacks: $missing (add its package to USERLAND)"
  echo ok > "$UL/stamp"
fi

# --- the initramfs -------------------------------------------------------------
IR=$WORK/initramfs
rm -rf "$IR"
mkdir -p "$IR"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,opt/cni/bin,tests}
cp "$BB" "$IR/bin/busybox"
for a in $($QUSER "$BB" --list); do
  case $a in busybox | ip | tc) continue ;; esac   # iproute2's ip and tc stand in for busybox's
  ln -s busybox "$IR/bin/$a"
done
if [ "$ARCH" = amd64 ]; then
  # iproute2 and nft from this machine, with the shared libraries they link.
  for t in ip bridge tc nft; do
    p=$(command -v $t) || die "$t missing on this machine"
    p=$(readlink -f "$p")
    cp "$p" "$IR/usr/sbin/$t"
    for lib in $(ldd "$p" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}'); do
      mkdir -p "$IR$(dirname "$lib")"
      [ -e "$IR$lib" ] || cp -L "$lib" "$IR$lib"
    done
  done
else
  cp -a "$UL"/. "$IR"/
  rm -f "$IR/stamp"
  for t in ip bridge tc nft; do [ -e "$IR/usr/sbin/$t" ] || ln -s "/sbin/$t" "$IR/usr/sbin/$t"; done
fi
echo "export LD_LIBRARY_PATH=/lib/$TRIPLET:/usr/lib/$TRIPLET" > "$IR/etc/profile.arch"
cp "$BIN" "$IR/opt/cni/bin/cnibox"
for p in $($QUSER "$BIN" --help | sed -n 's/^plugins: //p'); do ln -s cnibox "$IR/opt/cni/bin/$p"; done
ln -s /opt/cni/bin/cnibox "$IR/bin/cnibox"
cp "$KDIR"/modules/*.ko "$IR/lib/modules/"
cp "$KDIR/modules.list" "$IR/etc/modules.list"
cp tests/vm/init "$IR/init"
cp tests/vm/run.sh "$IR/tests/run.sh"
chmod 755 "$IR/init" "$IR/tests/run.sh"
echo "root:x:0:0:root:/root:/bin/sh" > "$IR/etc/passwd"
(cd "$IR" && find . | "$HBB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 > "$WORK/initramfs.cpio.gz")
say "$ARCH: kernel $kver, initramfs $(stat -c %s "$WORK/initramfs.cpio.gz") bytes, prepared in $(($(date +%s) - t0)) s"

# --- boot ---------------------------------------------------------------------------
LOG=$WORK/console.log
t1=$(date +%s)
set +e
# TCG, not KVM: a KVM guest hangs on this machine. No network card.
# shellcheck disable=SC2086
timeout -k 10 "$TIMEOUT" $QEMU $MACH -m "$MEM" -smp 1 -nographic -no-reboot -nic none \
  -kernel "$KDIR/vmlinuz" -initrd "$WORK/initramfs.cpio.gz" \
  -append "console=$CONSOLE quiet panic=-1 mitigations=off" </dev/null 2>&1 | sed -u 's/\r//g; s/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g' | tee "$LOG" |
  if [ "${VM_QUIET:-}" = 1 ]; then cat >/dev/null; else cat; fi
rc=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - t1))
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOG" | tail -1 || true)
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  say "the guest did not finish within ${TIMEOUT}s (console: $LOG)"
elif [ "$rc" != 0 ]; then
  say "qemu exited with status $rc (console: $LOG)"
fi
say "guest ran ${secs} s; total $(($(date +%s) - t0)) s; console log: $LOG"
# What failed and why, on stdout even when the console is not shown (VM_QUIET):
# a CI log that keeps only the tail still names the assertion.
grep '^FAIL ' "$LOG" || true
if [ -z "$summary" ]; then
  # No summary (timeout, crash): what finished counts, and the run failed.
  echo "$(grep -c '^PASS ' "$LOG") passed, $(($(grep -c '^FAIL ' "$LOG") + 1)) failed"
  exit 1
fi
echo "$summary"
passed=${summary%% passed*}
failed=${summary#*, }; failed=${failed%% failed}
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
