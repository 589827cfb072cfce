#!/usr/bin/env bash
# Builds an initramfs (uncompressed newc cpio, which every kernel accepts).
# Usage: initramfs.sh OUT.cpio KERNEL_NAME TEST_BIN "TEST_ARGS" MODULES_DIR|- BIN...
#   BIN... are the static executables to put into /bin (the first one named TEST_BIN runs).
# BUSYBOX: the static busybox of the VM's architecture (default /bin/busybox, the host's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 kname=$2 bin=$3 args=$4 mods=$5
shift 5
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,usr/bin,usr/sbin}
cp "${BUSYBOX:-/bin/busybox}" "$stage/bin/busybox"
cp "$here/init" "$stage/init"
chmod 755 "$stage/init"
for b in "$@"; do cp "$b" "$stage/bin/"; done
# A real udevd (and dynamically linked tools such as the unibuf CLI) when asked: scripts/vm/udev.sh.
if [ "${UNIBUF_VM_UDEV:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    "$here/udev.sh" "$stage" ${UNIBUF_VM_DYN_BINS:-}
fi
[ -x "$stage/bin/$bin" ] || { echo "initramfs: no executable $bin among: $*" >&2; exit 1; }
if [ "$mods" != - ]; then
    cp "$mods"/*.ko "$stage/lib/modules/" 2>/dev/null || true
    cp "$mods/load-order" "$stage/lib/modules/load-order"
fi
# Values are single-quoted for the init's `.`; filters are plain test-name fragments.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
    echo "KERNEL_NAME=$(q "$kname")"
    echo "TEST_BIN=$(q "$bin")"
    echo "TEST_ARGS=$(q "$args")"
} >"$stage/etc/hwtest.conf"
(cd "$stage" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) >"$out"
