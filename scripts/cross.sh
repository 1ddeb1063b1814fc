# Sourced by scripts/dist.sh and scripts/test-arch.sh: how to build cnibox for
# each Linux target, and how to run what was built.
#
#   cross_env TRIPLE KIND    exports cargo's settings for TRIPLE; KIND is
#                            stable (rustup's std), tiny (nightly build-std,
#                            TINYFLAGS, the release artifact) or test (unit
#                            tests: build-std with unwinding where rustup has
#                            no std for TRIPLE)
#   CARGO                    the cargo command line prefix cross_env chose
#   QEMU                     qemu-user binary for TRIPLE (empty for x86_64)
#
# rustup ships musl std for x86_64, aarch64 (stable only) and i686 here; for
# the rest std is built from rust-src by nightly (-Z build-std), linked by
# rust-lld against a small sysroot under target/cross/TRIPLE: musl's crt
# objects and libc.a from Debian's musl-dev:ARCH (built from Debian's musl
# source for riscv64, which bookworm lacks), crtbegin/crtend from Debian's
# gcc-TRIPLE cross compiler, and libgcc_eh.a as the unwinder with the one
# symbol it wants from glibc (_dl_find_object) answered "not found", which
# sends it to dl_iterate_phdr as on older glibc.

CROSS_ROOT=${CROSS_ROOT:-$PWD/target/cross}
ALL_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf riscv64gc-unknown-linux-musl i686-unknown-linux-musl s390x-unknown-linux-musl"

# short name used in file names (dist tarballs, Debian architecture where one exists)
arch_of() {
  case $1 in
    x86_64-*) echo x86_64 ;; aarch64-*) echo arm64 ;; armv7-*) echo armhf ;;
    riscv64*) echo riscv64 ;; i686-*) echo i686 ;; s390x-*) echo s390x ;;
    *) echo "cross: unknown target $1" >&2; return 1 ;;
  esac
}
deb_arch_of() { case $1 in i686-*) echo i386 ;; x86_64-*) echo amd64 ;; *) arch_of "$1" ;; esac; }
gnu_of() {
  case $1 in
    aarch64-*) echo aarch64-linux-gnu ;; armv7-*) echo arm-linux-gnueabihf ;; riscv64*) echo riscv64-linux-gnu ;;
    i686-*) echo i686-linux-gnu ;; s390x-*) echo s390x-linux-gnu ;; x86_64-*) echo x86_64-linux-gnu ;;
  esac
}
musl_dir_of() {
  case $1 in
    aarch64-*) echo /usr/lib/aarch64-linux-musl ;; armv7-*) echo /usr/lib/arm-linux-musleabihf ;;
    i686-*) echo /usr/lib/i386-linux-musl ;; s390x-*) echo /usr/lib/s390x-linux-musl ;;
    riscv64*) echo "$CROSS_ROOT/musl-riscv64/lib" ;;
  esac
}
qemu_of() {
  case $1 in
    x86_64-*) echo "" ;; aarch64-*) echo qemu-aarch64-static ;; armv7-*) echo qemu-arm-static ;;
    riscv64*) echo qemu-riscv64-static ;; i686-*) echo qemu-i386-static ;; s390x-*) echo qemu-s390x-static ;;
  esac
}
# rustup has this target's std for TOOLCHAIN (stable or nightly)?
has_std() {
  case "$2:$1" in
    *:x86_64-* | *:i686-* | stable:aarch64-*) return 0 ;;
    *) return 1 ;;
  esac
}

# musl for riscv64, from Debian's source package (bookworm has no riscv64 port).
build_musl_riscv64() {
  local out=$CROSS_ROOT/musl-riscv64 src
  [ -f "$out/lib/libc.a" ] && return 0
  mkdir -p "$CROSS_ROOT/src"
  if ! ls "$CROSS_ROOT"/src/musl_*.orig.tar.gz >/dev/null 2>&1; then
    (cd "$CROSS_ROOT/src" && apt-get source --download-only -qq musl >/dev/null 2>&1) ||
      { echo "cross: apt-get source musl failed (scripts/setup.sh adds the deb-src line)" >&2; return 1; }
  fi
  src=$CROSS_ROOT/musl-riscv64-build
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$(ls "$CROSS_ROOT"/src/musl_*.orig.tar.gz | tail -1)" -C "$src" --strip-components=1
  echo "cross: building musl for riscv64 from Debian's source" >&2
  (cd "$src" && CC=riscv64-linux-gnu-gcc AR=riscv64-linux-gnu-ar RANLIB=riscv64-linux-gnu-ranlib \
    ./configure --target=riscv64-linux-gnu --prefix=/ --disable-shared >/dev/null &&
    nice make -s -j"$(nproc)" lib/libc.a lib/crt1.o lib/crti.o lib/crtn.o lib/rcrt1.o lib/Scrt1.o >/dev/null) ||
    { echo "cross: musl build for riscv64 failed" >&2; return 1; }
  mkdir -p "$out/lib"
  cp "$src"/lib/{libc.a,crt1.o,crti.o,crtn.o,rcrt1.o,Scrt1.o} "$out/lib/"
  rm -rf "$src"
}

# The link-time sysroot for a build-std target (see the top of this file).
cross_sysroot() {
  local t=$1 dir=$CROSS_ROOT/$1 gnu musl gccdir
  gnu=$(gnu_of "$t")
  if [ -f "$dir/stamp" ]; then echo "$dir"; return 0; fi
  case $t in riscv64*) build_musl_riscv64 || return 1 ;; esac
  musl=$(musl_dir_of "$t")
  gccdir=$(ls -d /usr/lib/gcc-cross/"$gnu"/* 2>/dev/null | sort -V | tail -1)
  [ -f "$musl/libc.a" ] || { echo "cross: no musl libc.a for $t in $musl (run scripts/setup.sh)" >&2; return 1; }
  [ -f "$gccdir/crtbegin.o" ] || { echo "cross: no gcc-$gnu (run scripts/setup.sh)" >&2; return 1; }
  rm -rf "$dir" && mkdir -p "$dir/unwind"
  cp "$musl"/{crt1.o,crti.o,crtn.o,rcrt1.o,Scrt1.o,libc.a} "$dir/"
  cp "$gccdir"/{crtbegin.o,crtend.o,crtbeginS.o,crtendS.o,crtbeginT.o} "$dir/"
  # the unwinder std links as libunwind.a
  cat > "$dir/unwind/dfo.c" <<'EOC'
/* What libgcc_eh takes from glibc, answered from musl's dl_iterate_phdr:
 * _dl_find_object (glibc 2.35's layout; the arm EHABI count and the i386
 * data base are not used here) and, on arm, __gnu_Unwind_Find_exidx. */
typedef __UINTPTR_TYPE__ uintptr_t;
typedef __SIZE_TYPE__ size_t;
#define UINTPTR_MAX __UINTPTR_MAX__
#define PT_LOAD 1
#define PT_GNU_EH_FRAME 0x6474e550
#ifdef __LP64__
typedef struct { unsigned p_type, p_flags; unsigned long p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align; } Phdr;
#else
typedef struct { unsigned p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align; } Phdr;
#endif
struct dl_phdr_info { uintptr_t dlpi_addr; const char *dlpi_name; const Phdr *dlpi_phdr; unsigned short dlpi_phnum; };
int dl_iterate_phdr(int (*)(struct dl_phdr_info *, size_t, void *), void *);
struct cnibox_dlfo {
  unsigned long long flags;
  void *map_start, *map_end, *link_map, *eh_frame;
#ifdef __i386__
  void *eh_dbase;
#endif
#ifdef __arm__
  int eh_count;
#endif
  unsigned long long reserved[7];
};
struct query { uintptr_t pc, lo, hi, eh, exidx; size_t exidx_len; int found; };
static int visit(struct dl_phdr_info *i, size_t size, void *data) {
  struct query *q = data;
  uintptr_t lo = UINTPTR_MAX, hi = 0, eh = 0, exidx = 0;
  size_t exidx_len = 0;
  int hit = 0;
  (void)size;
  for (int k = 0; k < i->dlpi_phnum; k++) {
    const Phdr *p = &i->dlpi_phdr[k];
    uintptr_t s = i->dlpi_addr + p->p_vaddr;
    if (p->p_type == PT_LOAD) {
      if (q->pc >= s && q->pc < s + p->p_memsz) hit = 1;
      if (s < lo) lo = s;
      if (s + p->p_memsz > hi) hi = s + p->p_memsz;
    } else if (p->p_type == PT_GNU_EH_FRAME) {
      eh = s;
    } else if (p->p_type == 0x70000001) { /* PT_ARM_EXIDX */
      exidx = s;
      exidx_len = p->p_memsz;
    }
  }
  if (!hit) return 0;
  q->lo = lo; q->hi = hi; q->eh = eh; q->exidx = exidx; q->exidx_len = exidx_len; q->found = 1;
  return 1;
}
int _dl_find_object(void *pc, struct cnibox_dlfo *r) {
  struct query q = { (uintptr_t)pc, 0, 0, 0, 0, 0, 0 };
  dl_iterate_phdr(visit, &q);
  if (!q.found) return -1;
  r->flags = 0; r->map_start = (void *)q.lo; r->map_end = (void *)q.hi; r->link_map = 0;
#ifdef __arm__
  r->eh_frame = (void *)q.exidx; r->eh_count = (int)(q.exidx_len / 8);
#else
  r->eh_frame = (void *)q.eh;
#endif
#ifdef __i386__
  r->eh_dbase = 0;
#endif
  return 0;
}
#ifdef __arm__
uintptr_t __gnu_Unwind_Find_exidx(uintptr_t pc, int *count) {
  struct query q = { pc, 0, 0, 0, 0, 0, 0 };
  dl_iterate_phdr(visit, &q);
  if (!q.found || !q.exidx) return 0;
  *count = (int)(q.exidx_len / 8);
  return q.exidx;
}
#endif
EOC
  "$gnu-gcc" -O2 -fPIC -c "$dir/unwind/dfo.c" -o "$dir/unwind/dfo.o"
  (cd "$dir/unwind" && "$gnu-ar" x "$gccdir/libgcc_eh.a" && rm -f ../libunwind.a && "$gnu-ar" rcD ../libunwind.a ./*.o)
  # libgcc.a for what libgcc_eh and musl take from it (e.g. __aeabi helpers on arm)
  cp "$gccdir/libgcc.a" "$dir/"
  rm -rf "$dir/unwind"
  echo ok > "$dir/stamp"
  echo "$dir"
}

# Paths that would otherwise end up in the binary (panic locations, debug
# strings): the source tree, cargo's registry, the toolchain's rust-src.
remap_flags() {
  local tc=$1 sysroot
  sysroot=$(rustc +"$tc" --print sysroot)
  echo "--remap-path-prefix=$PWD=/cnibox --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$sysroot=/rust"
}

cross_env() {
  local t=$1 kind=$2 T tc flags sysroot
  unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  T=$(echo "$t" | tr 'a-z-' 'A-Z_')
  QEMU=$(qemu_of "$t")
  export "CARGO_TARGET_${T}_LINKER=rust-lld"
  if [ -n "$QEMU" ]; then export "CARGO_TARGET_${T}_RUNNER=$QEMU"; fi
  case $kind in tiny | test) tc=nightly ;; *) tc=stable ;; esac
  # test: stable where rustup has std, nightly build-std (with unwinding) elsewhere
  if [ "$kind" = test ] && has_std "$t" stable; then tc=stable; fi
  flags="-C target-feature=+crt-static $(remap_flags $tc)"
  CARGO="cargo +$tc"
  if ! has_std "$t" $tc; then
    sysroot=$(cross_sysroot "$t") || return 1
    flags="$flags -C link-self-contained=yes -L native=$sysroot"
    if [ "$kind" = test ]; then
      CARGO="$CARGO -Z build-std"
    else
      CARGO="$CARGO -Z build-std=std,panic_abort"
    fi
  elif [ "$kind" = tiny ]; then
    CARGO="$CARGO -Z build-std=std,panic_abort"
  fi
  # the Makefile's TINYSTD: std rebuilt for size (README, "Size")
  [ "$kind" = tiny ] && CARGO="$CARGO -Z build-std-features=optimize_for_size"
  [ "$kind" = tiny ] && flags="$flags $TINYFLAGS"
  # LLVM's machine outliner (in TINYFLAGS for x86_64) only where it was tested: on i686 it
  # breaks compiler_builtins ("expected relocatable expression"); AArch64 and RISC-V run
  # it at this opt-level by default.
  case $t in x86_64-*) ;; *) flags=${flags//-Cllvm-args=-enable-machine-outliner/} ;; esac
  # the functions the common calls run first in the code (link/hot-text.ld, README "Benchmark");
  # not on armv7, where rust-lld's layout with it grew the binary by 65 KB (588,500 -> 654,088)
  case "$kind:$t" in
    tiny:armv7-*) ;;
    tiny:*) flags="$flags -C link-arg=--script=$PWD/link/hot-text.ld" ;;
  esac
  # x86_64's static-pie: relocations packed (DT_RELR, which musl's static-pie start applies;
  # 11 KB of RELA otherwise) and identical code folded, as make's builds link it (build.rs,
  # the Makefile's TINYLINK), so that the artifact is the binary `make tiny` measures
  case "$kind:$t" in
    tiny:x86_64-*) flags="$flags -C link-arg=-zpack-relative-relocs -C link-arg=--icf=all" ;;
  esac
  export "CARGO_TARGET_${T}_RUSTFLAGS=$flags"
  export CARGO
}
