#!/usr/bin/env bash
# make test-arch: cnibox on each architecture it ships for (x86_64 is make
# test and make test-vm).
#
#   ./scripts/test-arch.sh [unit] [i686] [vm-arm64] [vm-armhf] [vm-s390x]
#                          (no argument: all of them)
#
#   unit      the unit tests of aarch64, armv7, riscv64, i686 and s390x,
#             each run under qemu-user (CARGO_TARGET_<T>_RUNNER; no
#             binfmt_misc needed)
#   i686      the whole integration suite, natively (this kernel runs
#             32-bit x86 programs), against the release binary of make dist
#   vm-ARCH   tests/vm/run.sh (what make test-vm runs, plus bridge ipMasq,
#             portmap from another namespace, bandwidth, firewall, tuning)
#             under ARCH's own Debian kernel in qemu-system, with ARCH's
#             iproute2 and nftables as the oracles, against make dist's binary
#
# riscv64 has no kernel test: Debian bookworm has no riscv64 port, so no
# riscv64 kernel or iproute2/nftables package to boot and check with.
#
# The last line is "test-arch: N passed, M failed" (N parts, each a whole
# target's unit tests, the i686 suite, or one VM run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/cross.sh
TINYFLAGS=${TINYFLAGS:-$(sed -n 's/^TINYFLAGS *:= *//p' Makefile)}
KIND=${DIST_KIND:-tiny}
parts=${*:-unit i686 vm-arm64 vm-armhf vm-s390x}
PASSED=0 FAILED=0 REPORT=
say() { echo "test-arch: $*" >&2; }
result() { # NAME RC SECONDS
  if [ "$2" = 0 ]; then PASSED=$((PASSED + 1)); REPORT="$REPORT\n  PASS $1 ($3 s)"; else FAILED=$((FAILED + 1)); REPORT="$REPORT\n  FAIL $1 ($3 s)"; fi
}

# make dist's binary for TRIPLE, built (with its tarball) if missing.
dist_bin() {
  local b=$ROOT/target/dist/$KIND/$1/$1/release/cnibox
  # Always through dist.sh: cargo rebuilds only what changed, and a binary
  # left from an older tree must not be the one tested.
  DIST_TARGETS=$1 ./scripts/dist.sh >&2 || return 1
  echo "$b"
}

for part in $parts; do
  case $part in
    unit)
      for t in aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf riscv64gc-unknown-linux-musl i686-unknown-linux-musl s390x-unknown-linux-musl; do
        t0=$(date +%s)
        say "unit tests of $t under $(qemu_of "$t")"
        rc=0
        # Three tests need what qemu-user does not give (they run natively in make test):
        # a wall-clock bound on an emulated debug build, the socket's netns ioctl, and a
        # new user namespace (the kernel refuses one to a process with threads, as qemu is).
        (cross_env "$t" test && nice $CARGO test --locked --lib --target "$t" --target-dir "$ROOT/target/arch/test" \
          -- --test-threads=2 --skip regex::tests::matching_is_linear_in_the_key \
          --skip sys::trust::tests::our_own_process_and_sockets \
          --skip sys::trust::tests::a_process_in_a_user_namespace_of_its_own_is_not_in_ours) || rc=$?
        result "unit $t" $rc $(($(date +%s) - t0))
      done
      ;;
    i686)
      t0=$(date +%s)
      t=i686-unknown-linux-musl
      rc=0
      bin=$(dist_bin $t) || rc=$?
      if [ $rc = 0 ]; then
        # the fault-injection build for tests/crash.rs, 32-bit as well
        (cross_env $t stable && nice $CARGO build --locked --features failpoints --bin cnibox --target $t \
          --target-dir "$ROOT/target/failpoints") || rc=$?
      fi
      if [ $rc = 0 ]; then
        say "integration suite against $bin ($(file -b "$bin" | cut -d, -f1-2))"
        CNIBOX_BIN=$bin CNIBOX_FAILPOINT_BIN=$ROOT/target/failpoints/$t/debug/cnibox \
          nice cargo test --locked --no-fail-fast --test '*' -- --test-threads="${TEST_THREADS:-4}" || rc=$?
      fi
      result "i686 integration suite" $rc $(($(date +%s) - t0))
      ;;
    vm-*)
      a=${part#vm-}
      t0=$(date +%s)
      case $a in
        arm64) t=aarch64-unknown-linux-musl ;; armhf) t=armv7-unknown-linux-musleabihf ;;
        s390x) t=s390x-unknown-linux-musl ;; amd64) t=x86_64-unknown-linux-musl ;;
        *) say "no VM for $a"; exit 2 ;;
      esac
      rc=0
      bin=$(dist_bin $t) || rc=$?
      out=$ROOT/target/test-arch-vm-$a.out
      : >"$out"
      [ $rc = 0 ] && { VM_ARCH=$a VM_QUIET=${VM_QUIET:-1} VM_TIMEOUT=${VM_TIMEOUT:-600} ./scripts/test-vm.sh "$bin" | tee "$out" || rc=$?; }
      result "vm $a ($t under Debian's $a kernel)" $rc $(($(date +%s) - t0))
      # test-vm's FAIL lines (scenario and reason) go into the final report, which a truncated log keeps
      [ $rc = 0 ] || REPORT="$REPORT$({ grep '^FAIL ' "$out" || true; } | sed 's/^/\\n      /' | tr -d '\n')"
      ;;
    *) say "unknown part $part"; exit 2 ;;
  esac
done
printf "test-arch:%b\n" "$REPORT" >&2
echo "test-arch: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
