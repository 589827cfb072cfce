#!/usr/bin/env bash
# Builds (or finds in the cache) the custom test kernel: Debian trixie's linux-source-6.12,
# `make tinyconfig` + hw-tests/kernel/*.config. Prints the path of the bzImage on stdout.
# Cache key: source package version + hash of the fragment(s). UNIBUF_REFRESH=1 re-checks apt for
# a newer source package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
lock_cache

frags=("$repo"/hw-tests/kernel/*.config)
hash=$(cat "${frags[@]}" | sha256sum | cut -c1-12)

# Fast path: a cached kernel for this fragment and the last source version we used, without apt.
if [ -f "$CACHE/kernels/custom-last" ]; then
    last=$(cat "$CACHE/kernels/custom-last")
    if [ -f "$CACHE/kernels/custom-$last-$hash/bzImage" ] && [ "${UNIBUF_REFRESH:-0}" != 1 ]; then
        echo "$CACHE/kernels/custom-$last-$hash/bzImage"
        exit 0
    fi
fi

suite_update trixie
ver=$(pkg_version trixie linux-source-6.12)
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "linux-source-6.12 not found in trixie"
out="$CACHE/kernels/custom-$ver-$hash"
if [ -f "$out/bzImage" ]; then
    echo "$ver" >"$CACHE/kernels/custom-last"
    echo "$out/bzImage"
    exit 0
fi

deb=$(download_deb trixie linux-source-6.12)
src="$CACHE/src/linux-source-$ver"
if [ ! -f "$src/.unpacked" ]; then
    log "unpacking $(basename "$deb")"
    rm -rf "$src"
    mkdir -p "$src"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-6.12.tar.*' |
        tar -xJ -C "$src" --strip-components=1
    touch "$src/.unpacked"
fi

build="$CACHE/build/custom-$ver"
mkdir -p "$build"
log "configuring: tinyconfig + ${frags[*]##*/}"
make -C "$src" O="$build" -s tinyconfig >&2
cat "${frags[@]}" >>"$build/.config"
# (Kconfig warns about every symbol the fragment overrides: expected, so not shown.)
make -C "$src" O="$build" -s olddefconfig 2>&1 | grep -v 'override: reassigning' >&2 || true

# Every option of the fragment must have survived olddefconfig.
dropped=()
while IFS= read -r line; do
    case "$line" in '' | '#'*) continue ;; esac
    grep -qxF "$line" "$build/.config" || dropped+=("$line")
done < <(cat "${frags[@]}")
[ "${#dropped[@]}" = 0 ] || die "options dropped by Kconfig (missing dependencies?): ${dropped[*]}"

jobs=$(nproc)
log "building bzImage with $jobs jobs (a few minutes on 2 cores)"
start=$(date +%s)
make -C "$src" O="$build" -j"$jobs" -s bzImage >&2 || die "kernel build failed"
log "kernel built in $(($(date +%s) - start)) s"
mkdir -p "$out.tmp"
cp "$build/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$build/.config" "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$ver" >"$CACHE/kernels/custom-last"
echo "$out/bzImage"
