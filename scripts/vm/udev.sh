#!/usr/bin/env bash
# Puts a real udevd into an initramfs tree: Debian's systemd-udevd/udevadm and v4l_id with the
# shared libraries they link (found with ldd on this host, so the package comes from this host's
# own apt sources), Debian's rules, udev-rules/60-unibuf.rules installed as docs/permissions.md
# says (/etc/udev/rules.d), the group unibuf with users `member` (1000, in it) and `outsider`
# (1001), and any extra dynamically linked binaries (the unibuf CLI) with their libraries.
# The VM's init starts udevd and runs the coldplug when /etc/hwtest-udev exists.
# Usage: udev.sh STAGE_DIR [DYNAMIC_BIN...]     (called by initramfs.sh when UNIBUF_VM_UDEV=1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
stage=$1
shift
CACHE="${UNIBUF_CACHE:-$HOME/.cache/unibuf}"
root="$CACHE/udev/root"
if [ ! -x "$root/bin/udevadm" ]; then
    mkdir -p "$CACHE/udev"
    (cd "$CACHE/udev" && rm -f udev_*.deb && apt-get download -q udev >&2) ||
        { echo "udev.sh: apt-get download udev failed" >&2; exit 1; }
    rm -rf "$root"
    dpkg-deb -x "$CACHE"/udev/udev_*.deb "$root"
fi
# A library and everything it needs, at the same path inside the stage.
copy_with_libs() {
    local f=$1 lib
    for lib in $(ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^[ \t]*\/[^ ]*ld-linux/ {print $1}'); do
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}
mkdir -p "$stage"/{bin,lib/systemd,lib/udev/rules.d,etc/udev/rules.d,run/udev}
cp "$root/bin/udevadm" "$stage/bin/udevadm"
ln -sf /bin/udevadm "$stage/lib/systemd/systemd-udevd"
cp "$root/lib/udev/v4l_id" "$stage/lib/udev/"
cp "$root"/lib/udev/rules.d/*.rules "$stage/lib/udev/rules.d/"
install -m 0644 "$repo/udev-rules/60-unibuf.rules" "$stage/etc/udev/rules.d/60-unibuf.rules"
copy_with_libs "$root/bin/udevadm"
copy_with_libs "$root/lib/udev/v4l_id"
for b in "$@"; do
    cp "$b" "$stage/bin/"
    copy_with_libs "$b"
done
# /lib64 of the dynamic loader (a usr-merged host names it /lib64/ld-linux-x86-64.so.2).
cat >"$stage/etc/passwd" <<'P'
root:x:0:0:root:/tmp:/bin/sh
member:x:1000:1000:in group unibuf:/tmp:/bin/sh
outsider:x:1001:1001:not in group unibuf:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$stage/etc/group" <<'G'
root:x:0:
tty:x:5:
disk:x:6:
dialout:x:20:
audio:x:29:
video:x:44:
kvm:x:104:
render:x:105:
input:x:106:
sgx:x:107:
unibuf:x:990:member
member:x:1000:
outsider:x:1001:
nogroup:x:65534:
G
printf 'passwd: files\ngroup: files\nshadow: files\n' >"$stage/etc/nsswitch.conf"
touch "$stage/etc/hwtest-udev"
