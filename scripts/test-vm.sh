#!/usr/bin/env bash
# make test-vm: run the interface kinds this machine's kernel lacks (ipvlan,
# 802.1Q vlan, dummy, VRF, bridge VLAN filtering) for real, under Debian's own
# kernel in qemu with software emulation (TCG).
#
#   ./scripts/test-vm.sh [path/to/static/cnibox]
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
WORK=$ROOT/target/vm
TIMEOUT=${VM_TIMEOUT:-300}
MEM=${VM_MEM:-512}
# Modules loaded in the guest, dependencies added from each module's own
# "depends=" (the package ships no modules.dep: depmod runs at install time).
MODULES="veth macvlan ipvlan 8021q dummy vrf bridge tun"
export DEBIAN_FRONTEND=noninteractive

say() { echo "test-vm: $*" >&2; }
die() { say "$*"; echo "0 passed, 1 failed"; exit 1; }
t0=$(date +%s)

[ -f "$BIN" ] || die "no binary at $BIN (run make build)"
if ldd "$BIN" 2>/dev/null | grep -q '=>'; then
  die "$BIN is dynamically linked; the guest has no libc for it (build the musl target)"
fi
mkdir -p "$WORK/debs"

apt_updated=
apt_update() {
  [ -n "$apt_updated" ] && return
  say "apt-get update"
  apt-get update -qq
  apt_updated=1
}

# --- qemu: installed from Debian's registry ---------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
  [ "$(id -u)" = 0 ] || die "qemu-system-x86_64 missing and not root to install qemu-system-x86"
  apt-cache show qemu-system-x86 >/dev/null 2>&1 || apt_update
  say "apt-get install qemu-system-x86"
  apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null || { apt_update; apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; }
fi
# The oracle in the guest: iproute2's ip -d and bridge vlan (busybox ip shows no link kind).
if ! command -v bridge >/dev/null || ! command -v ip >/dev/null; then
  [ "$(id -u)" = 0 ] || die "iproute2 missing"
  apt-cache show iproute2 >/dev/null 2>&1 || apt_update
  apt-get install -y -qq iproute2 >/dev/null
fi

# --- packages downloaded (not installed) into target/vm/debs ----------------
# fetch_deb PACKAGE: path of PACKAGE_*.deb in the cache, downloading it once.
fetch_deb() {
  local pkg=$1 f
  f=$(ls "$WORK/debs/${pkg}"_*.deb 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$f" ]; then
    apt-cache show "$pkg" >/dev/null 2>&1 || apt_update
    say "apt-get download $pkg"
    (cd "$WORK/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
      { apt_update; (cd "$WORK/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null); }
    f=$(ls "$WORK/debs/${pkg}"_*.deb | sort -V | tail -1)
  fi
  echo "$f"
}

# The versioned kernel package behind linux-image-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true)
if [ -z "$kpkg" ]; then
  # No package lists: use a cached kernel if there is one, else update and ask again.
  kpkg=$(ls "$WORK/debs" 2>/dev/null | sed -n 's/^\(linux-image-[0-9][^_]*\)_.*\.deb$/\1/p' | sort -V | tail -1 || true)
  if [ -z "$kpkg" ]; then
    apt_update
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
fi
[ -n "$kpkg" ] || die "cannot tell which package linux-image-amd64 depends on"
kver=${kpkg#linux-image-}
KDIR=$WORK/kernel-$kver

if [ ! -f "$KDIR/stamp" ] || [ "$(cat "$KDIR/stamp")" != "$MODULES" ]; then
  deb=$(fetch_deb "$kpkg")
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

bbdeb=$(fetch_deb busybox-static)
BB=$WORK/busybox-static/bin/busybox
if [ ! -x "$BB" ] || [ "$bbdeb" -nt "$BB" ]; then
  rm -rf "$WORK/busybox-static"
  dpkg-deb -x "$bbdeb" "$WORK/busybox-static"
  touch "$BB"
fi

# --- the initramfs -------------------------------------------------------------
IR=$WORK/initramfs
rm -rf "$IR"
mkdir -p "$IR"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,opt/cni/bin,tests}
cp "$BB" "$IR/bin/busybox"
for a in $("$BB" --list); do
  case $a in busybox | ip) continue ;; esac   # iproute2's ip stands in for busybox's
  ln -s busybox "$IR/bin/$a"
done
# iproute2 from this machine, with the shared libraries it links.
for t in ip bridge; do
  p=$(command -v $t); p=$(readlink -f "$p")
  cp "$p" "$IR/usr/sbin/$t"
  for lib in $(ldd "$p" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}'); do
    mkdir -p "$IR$(dirname "$lib")"
    [ -e "$IR$lib" ] || cp -L "$lib" "$IR$lib"
  done
done
cp "$BIN" "$IR/opt/cni/bin/cnibox"
for p in $("$BIN" --help | sed -n 's/^plugins: //p'); do ln -s cnibox "$IR/opt/cni/bin/$p"; done
ln -s /opt/cni/bin/cnibox "$IR/bin/cnibox"
cp "$KDIR"/modules/*.ko "$IR/lib/modules/"
cp "$KDIR/modules.list" "$IR/etc/modules.list"
cp tests/vm/init "$IR/init"
cp tests/vm/run.sh "$IR/tests/run.sh"
chmod 755 "$IR/init" "$IR/tests/run.sh"
echo "root:x:0:0:root:/root:/bin/sh" > "$IR/etc/passwd"
(cd "$IR" && find . | "$BB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 > "$WORK/initramfs.cpio.gz")
say "kernel $kver, initramfs $(stat -c %s "$WORK/initramfs.cpio.gz") bytes, prepared in $(($(date +%s) - t0)) s"

# --- boot ---------------------------------------------------------------------------
LOG=$WORK/console.log
t1=$(date +%s)
set +e
# TCG, not KVM: a KVM guest hangs on this machine. No network card.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m "$MEM" -smp 1 -nographic -no-reboot -nic none \
  -kernel "$KDIR/vmlinuz" -initrd "$WORK/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 mitigations=off" </dev/null 2>&1 | sed -u 's/\r//g; s/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g' | tee "$LOG" |
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
if [ -z "$summary" ]; then
  # No summary (timeout, crash): what finished counts, and the run failed.
  echo "$(grep -c '^PASS ' "$LOG") passed, $(($(grep -c '^FAIL ' "$LOG") + 1)) failed"
  exit 1
fi
echo "$summary"
passed=${summary%% passed*}
failed=${summary#*, }; failed=${failed%% failed}
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
