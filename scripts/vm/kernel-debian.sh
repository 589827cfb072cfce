#!/usr/bin/env bash
# Fetches (or finds in the cache) one of Debian's stock kernels with the modules the tests need.
# Usage: kernel-debian.sh SERIES [ARCH]   SERIES: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie),
#   7.2 (sid); ARCH: amd64 (default) or arm64 (6.12 only: trixie's arm64 kernel).
# Prints the kernel's cache directory on stdout:
#   DIR/vmlinuz, DIR/release (uname -r), DIR/config, DIR/modules/*.ko (decompressed),
#   DIR/modules/load-order (insmod order, dependencies first), DIR/modules/missing (wanted modules
#   that are not modules: built in or absent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
lock_cache

series=${1:?usage: kernel-debian.sh 5.10|6.1|6.12|7.2 [amd64|arm64]}
arch=${2:-amd64}
case "$arch/$series" in
    amd64/5.10) suite=bullseye ;;
    amd64/6.1) suite=bookworm ;;
    amd64/6.12) suite=trixie ;;
    amd64/7.2) suite=sid ;;
    arm64/6.12) suite=trixie-arm64 ;;
    *) die "unknown Debian kernel $series for $arch (amd64: 5.10, 6.1, 6.12, 7.2; arm64: 6.12)" ;;
esac
# Cache name: debian-6.12-V (amd64, as before), debian-arm64-6.12-V.
name=debian-$series
[ "$arch" = amd64 ] || name=debian-$arch-$series
# Modules the tests use; their dependencies come from modules.dep.
WANTED=(vivid vgem vkms udmabuf system_heap cma_heap vfio vfio_pci vfio_iommu_type1 iommufd)

if [ -f "$CACHE/kernels/$name-last" ] && [ "${UNIBUF_REFRESH:-0}" != 1 ]; then
    d="$CACHE/kernels/$name-$(cat "$CACHE/kernels/$name-last")"
    [ -f "$d/vmlinuz" ] && [ -f "$d/modules/load-order" ] && { echo "$d"; exit 0; }
fi

suite_update "$suite"
pkg=$(resolve_image_pkg "$suite" "linux-image-$arch")
# The -unsigned package holds the same kernel without the signed-EFI wrapper; prefer it.
if [ -n "$(pkg_version "$suite" "$pkg-unsigned" 2>/dev/null)" ] && [ "$(pkg_version "$suite" "$pkg-unsigned")" != "(none)" ]; then
    pkg="$pkg-unsigned"
fi
ver=$(pkg_version "$suite" "$pkg")
out="$CACHE/kernels/$name-$ver"
if [ -f "$out/vmlinuz" ] && [ -f "$out/modules/load-order" ]; then
    echo "$ver" >"$CACHE/kernels/$name-last"
    echo "$out"
    exit 0
fi

# Since 7.x (sid) linux-image-V is a metapackage: the kernel is in linux-binary-V, the modules in
# linux-modules-V, the config in linux-base-V. Unpack whichever of those it depends on.
parts=("$pkg")
while IFS= read -r p; do parts+=("$p"); done < <(
    suite_apt_cache "$suite" depends "$pkg" | awk '/Depends: linux-(binary|modules|base)-[0-9]/ {print $2}'
)
tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/root" "$tmp/modules"
for p in "${parts[@]}"; do
    deb=$(download_deb "$suite" "$p")
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$tmp/root"
done
krel=$(basename "$(find "$tmp/root/lib/modules" "$tmp/root/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | head -1 || true)")
[ -n "$krel" ] || die "no modules directory in $deb"
moddir=$(find "$tmp/root/lib/modules/$krel" "$tmp/root/usr/lib/modules/$krel" -maxdepth 0 -type d 2>/dev/null | head -1 || true)
# /boot/vmlinuz-R and /boot/config-R; since 7.x /usr/lib/modules/R/vmlinuz and .../config.
cp "$tmp/root/boot/vmlinuz-$krel" "$tmp/vmlinuz" 2>/dev/null || cp "$moddir/vmlinuz" "$tmp/vmlinuz" ||
    die "no kernel image in ${parts[*]}"
cp "$tmp/root/boot/config-$krel" "$tmp/config" 2>/dev/null || cp "$moddir/config" "$tmp/config" 2>/dev/null || true
echo "$krel" >"$tmp/release"
# Debian's packages do not ship modules.dep (postinst makes it): generate it.
base=${moddir%/lib/modules/"$krel"}
depmod -b "$base" "$krel" || die "depmod failed for $krel"

norm() { echo "$1" | tr - _; }
# path_of NAME: the module's path relative to moddir (from modules.dep), empty if none.
path_of() {
    local n
    n=$(norm "$1")
    awk -F: -v n="$n" '{
        p = $1; b = p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b); gsub(/-/, "_", b)
        if (b == n) { print p; exit }
    }' "$moddir/modules.dep"
}
deps_of() {
    awk -F: -v p="$1" '$1 == p { print $2; exit }' "$moddir/modules.dep"
}
declare -A seen=()
order=()
visit() {
    local p=$1 d
    [ -n "${seen[$p]:-}" ] && return 0
    seen[$p]=1
    for d in $(deps_of "$p"); do visit "$d"; done
    order+=("$p")
}
: >"$tmp/modules/missing"
for m in "${WANTED[@]}"; do
    p=$(path_of "$m")
    if [ -n "$p" ]; then
        visit "$p"
    else
        # Built in (bool options such as UDMABUF never show in modules.builtin) or absent:
        # the tests inside the VM find out which.
        echo "$m" >>"$tmp/modules/missing"
    fi
done
: >"$tmp/modules/load-order"
for p in "${order[@]}"; do
    f=$(basename "$p")
    case "$f" in
        *.ko.xz) xz -dc "$moddir/$p" >"$tmp/modules/${f%.xz}"; f=${f%.xz} ;;
        *.ko.zst) zstd -qdc "$moddir/$p" >"$tmp/modules/${f%.zst}"; f=${f%.zst} ;;
        *.ko.gz) gzip -dc "$moddir/$p" >"$tmp/modules/${f%.gz}"; f=${f%.gz} ;;
        *) cp "$moddir/$p" "$tmp/modules/$f" ;;
    esac
    echo "$f" >>"$tmp/modules/load-order"
done
log "$name ($krel): $(wc -l <"$tmp/modules/load-order") modules; not modules (built in or absent): $(tr '\n' ' ' <"$tmp/modules/missing")"
rm -rf "$tmp/root"
rm -rf "$out"
mv "$tmp" "$out"
echo "$ver" >"$CACHE/kernels/$name-last"
echo "$out"
