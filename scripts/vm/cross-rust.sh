#!/usr/bin/env bash
# Sets up (or finds in the cache) a Rust compiler that builds for aarch64-unknown-linux-gnu here,
# where rustup cannot download another target's standard library. Prints the toolchain directory
# on stdout; build with that directory's own cargo (through rustup's proxy, cargo would look for
# the std source in rustup's nightly instead):
#   PATH=DIR/bin:$PATH RUSTC=DIR/bin/rustc DIR/bin/cargo build -Zbuild-std=std,panic_abort \
#       --target aarch64-unknown-linux-gnu ...
# (scripts/build-aarch64 does, for scripts/hw-test and for boards).
#
# How: the machine's nightly rustc (rustup's `nightly`, needed for -Zbuild-std) compiles the
# standard library from source, taken from Debian sid's `rust-src` (rustup's own rust-src
# component may not be downloadable; where it is installed, it is not used here). Cargo looks
# for that source in SYSROOT/lib/rustlib/src, so DIR is a small sysroot of its own: hard links
# to the nightly's `rustc` and its libraries (its sysroot is where librustc_driver lies), a link to its host std, and the `library/` tree of
# rust-src. Nothing of rustup's is changed. Chosen over a debootstrap chroot with Debian's
# rustc 1.85 + libstd-rust-dev:arm64 because it needs one 46 MB package instead of a chroot
# (~300 MB, minutes to set up) and builds with the same compiler generation as the x86 binaries
# (the lock file's crates need a newer rustc than 1.85 for some builds).
#
# Cache: $CACHE/cross/rust-C-V/ (C = nightly commit, V = rust-src version); cross/rust-last names
# the last one (fast path without apt). UNIBUF_REFRESH=1 re-checks apt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

nightly=${UNIBUF_CROSS_TOOLCHAIN:-nightly}
sysroot=$(rustc +"$nightly" --print sysroot 2>/dev/null) ||
    die "no rustup toolchain '$nightly' (rustup toolchain list): the aarch64 build needs a nightly rustc for -Zbuild-std"
commit=$(rustc +"$nightly" -vV | awk '/^commit-hash:/ {print substr($2, 1, 12)}')

if [ -f "$CACHE/cross/rust-last" ] && [ "${UNIBUF_REFRESH:-0}" != 1 ]; then
    d="$CACHE/cross/rust-$commit-$(cat "$CACHE/cross/rust-last")"
    [ -f "$d/.ready" ] && { echo "$d"; exit 0; }
fi

exec 8>"$CACHE/.cross.lock"
flock 8
suite_update sid
ver=$(pkg_version sid rust-src)
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "rust-src not found in sid"
out="$CACHE/cross/rust-$commit-$ver"
if [ ! -f "$out/.ready" ]; then
    deb=$(download_deb sid rust-src)
    tmp="$out.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp/bin" "$tmp/lib/rustlib/src/rust" "$tmp/x"
    log "unpacking library/ of $(basename "$deb") for -Zbuild-std"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './usr/src/rustc-*/library/*'
    mv "$tmp"/x/usr/src/rustc-*/library "$tmp/lib/rustlib/src/rust/library"
    rm -rf "$tmp/x"
    [ -f "$tmp/lib/rustlib/src/rust/library/Cargo.lock" ] || die "rust-src $ver has no library/Cargo.lock"
    # rustc takes as its sysroot the real location of librustc_driver: hard links (a copy when
    # the cache is on another file system) for the binary and its libraries, symlinks for the rest.
    for b in rustc cargo; do
        cp -l "$sysroot/bin/$b" "$tmp/bin/$b" 2>/dev/null || cp "$sysroot/bin/$b" "$tmp/bin/$b"
    done
    for f in "$sysroot"/lib/*; do
        case "$(basename "$f")" in
            rustlib) ;;
            *.so*) cp -l "$f" "$tmp/lib/" 2>/dev/null || cp -a "$f" "$tmp/lib/" ;;
            *) ln -s "$f" "$tmp/lib/" ;;
        esac
    done
    # Not the nightly's own src (rustup's rust-src component, when it is installed, as
    # scripts/capi-test does for Miri): the std source here is Debian's, unpacked above.
    for f in "$sysroot"/lib/rustlib/*; do
        [ "$(basename "$f")" = src ] || ln -s "$f" "$tmp/lib/rustlib/"
    done
    [ "$("$tmp/bin/rustc" --print sysroot)" = "$tmp" ] || die "the copied rustc does not take $tmp as its sysroot"
    touch "$tmp/.ready"
    rm -rf "$out"
    mv "$tmp" "$out"
    log "aarch64 cross toolchain: $nightly ($commit) + rust-src $ver in $out"
fi
echo "$ver" >"$CACHE/cross/rust-last"
echo "$out"
