#!/usr/bin/env bash
# Builds (or finds in the cache) a custom test kernel: Debian's linux-source-SERIES,
# `make tinyconfig` + the fragments of hw-tests/kernel/. Prints the path of the kernel image on
# stdout (bzImage on x86_64, Image on arm64, cross-built with gcc-aarch64-linux-gnu).
# Usage: kernel-custom.sh [ARCH [SERIES]]   ARCH: x86_64 (default) or arm64; SERIES: 6.12
#   (default, trixie's linux-source-6.12) or 7.2 (sid's linux-source-7.2).
# Fragments, in this order (a later assignment wins, as in Kconfig): unibuf-test.config (every
# kernel), ARCH.config (arm64.config: the arm64 devices, x86-only options off), linux-SERIES.config.
# Cache key: source package version + hash of the fragments, per ARCH and SERIES (kernels/TAG-V-H,
# TAG = custom, custom-7.2, custom-arm64, ...: the kernel's name in scripts/hw-test).
# UNIBUF_REFRESH=1 re-checks apt for a newer source package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
lock_cache

arch=${1:-x86_64}
series=${2:-6.12}
case "$series" in
    6.12) suite=trixie ;;
    7.2) suite=sid ;;
    *) die "unknown kernel series $series (6.12 or 7.2)" ;;
esac
case "$arch" in
    x86_64) kmake=() image=arch/x86/boot/bzImage ;;
    arm64) kmake=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-) image=arch/arm64/boot/Image ;;
    *) die "unknown architecture $arch (x86_64 or arm64)" ;;
esac
tag=custom
[ "$arch" = x86_64 ] || tag=$tag-$arch
[ "$series" = 6.12 ] || tag=$tag-$series
kdir=$repo/hw-tests/kernel
frags=("$kdir/unibuf-test.config")
for f in "$kdir/$arch.config" "$kdir/linux-$series.config"; do
    [ -f "$f" ] && frags+=("$f")
done
hash=$(cat "${frags[@]}" | sha256sum | cut -c1-12)
img=$(basename "$image")

# Fast path: a cached kernel for these fragments and the last source version we used, without apt.
if [ -f "$CACHE/kernels/$tag-last" ]; then
    last=$(cat "$CACHE/kernels/$tag-last")
    if [ -f "$CACHE/kernels/$tag-$last-$hash/$img" ] && [ "${UNIBUF_REFRESH:-0}" != 1 ]; then
        echo "$CACHE/kernels/$tag-$last-$hash/$img"
        exit 0
    fi
fi

suite_update "$suite"
ver=$(pkg_version "$suite" "linux-source-$series")
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "linux-source-$series not found in $suite"
out="$CACHE/kernels/$tag-$ver-$hash"
if [ -f "$out/$img" ]; then
    echo "$ver" >"$CACHE/kernels/$tag-last"
    echo "$out/$img"
    exit 0
fi

deb=$(download_deb "$suite" "linux-source-$series")
src="$CACHE/src/linux-source-$ver"
if [ ! -f "$src/.unpacked" ]; then
    log "unpacking $(basename "$deb")"
    rm -rf "$src"
    mkdir -p "$src"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards "./usr/src/linux-source-$series.tar.*" |
        tar -xJ -C "$src" --strip-components=1
    touch "$src/.unpacked"
fi

build="$CACHE/build/$tag-$ver"
mkdir -p "$build"
log "configuring $tag ($arch, linux-source $ver): tinyconfig + ${frags[*]##*/}"
make -C "$src" O="$build" "${kmake[@]}" -s tinyconfig >&2
cat "${frags[@]}" >>"$build/.config"
# (Kconfig warns about every symbol the fragment overrides: expected, so not shown.)
make -C "$src" O="$build" "${kmake[@]}" -s olddefconfig 2>&1 | grep -v 'override: reassigning' >&2 || true

# Every option of the fragments must have survived olddefconfig with its last assigned value
# (`CONFIG_X=v`, or `# CONFIG_X is not set`: absent or unset).
declare -A want=()
order=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) o=${line%%=*} v=${line#*=} ;;
        '# CONFIG_'*' is not set') o=${line#\# } o=${o%% *} v=n ;;
        *) continue ;;
    esac
    [ -n "${want[$o]+x}" ] || order+=("$o")
    want[$o]=$v
done < <(cat "${frags[@]}")
dropped=()
for o in "${order[@]}"; do
    if [ "${want[$o]}" = n ]; then
        grep -q "^$o=" "$build/.config" && dropped+=("$o (wanted off: $(grep "^$o=" "$build/.config"))")
    else
        grep -qxF "$o=${want[$o]}" "$build/.config" || dropped+=("$o=${want[$o]}")
    fi
done
[ "${#dropped[@]}" = 0 ] || die "options dropped by Kconfig (missing dependencies?): ${dropped[*]}"

jobs=$(nproc)
log "building $img ($tag) with $jobs jobs (a few minutes on 2 cores)"
start=$(date +%s)
nice -n 10 make -C "$src" O="$build" "${kmake[@]}" -j"$jobs" -s "$img" >&2 || die "kernel build failed"
log "kernel $tag built in $(($(date +%s) - start)) s"
mkdir -p "$out.tmp"
cp "$build/$image" "$out.tmp/$img"
cp "$build/.config" "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$ver" >"$CACHE/kernels/$tag-last"
echo "$out/$img"
