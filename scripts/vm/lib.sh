# shellcheck shell=bash
# Shared helpers of scripts/hw-test (sourced, not run).
#
# Cache layout (UNIBUF_CACHE, default ~/.cache/unibuf):
#   apt/SUITE/          private apt sources list + lists for trixie / bookworm (the system's stay untouched)
#   debs/               downloaded .deb packages (linux-source-6.12, linux-image-*)
#   src/linux-source-V/ the unpacked kernel tree the custom kernel is built in (kept for incremental rebuilds)
#   kernels/custom-V-H/ bzImage + config of the custom kernel (V = source package version, H = fragment hash)
#   kernels/debian-6.12-V/, kernels/debian-6.1-V/
#                       vmlinuz + modules/ (decompressed .ko, only what the tests need and their
#                       dependencies) + modules/load-order (insmod order)
#   cross/rust-C-V/     the aarch64 cross toolchain (scripts/vm/cross-rust.sh); cross/busybox-arm64-V/
#   runs/DATE.XXXX/     one directory per run (initramfs, serial logs); runs/latest links the last one

CACHE="${UNIBUF_CACHE:-$HOME/.cache/unibuf}"
mkdir -p "$CACHE"

log() { printf '[hw-test %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[hw-test] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages the harness needs, plus any given as arguments.
install_host_deps() {
    install_pkgs qemu-system-x86 busybox-static cpio bc bison flex libelf-dev libssl-dev xz-utils zstd \
        kmod build-essential ca-certificates libudev-dev pkg-config "$@"
}

# Installs the given Debian packages that are not installed yet (dpkg -s tells), with apt-get.
install_pkgs() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    log "installing ${missing[*]}"
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Debian kernels come from private apt lists per suite ($CACHE/apt/SUITE), so the host's own
# sources (whatever release it runs) and lists stay untouched.
suite_dir() { echo "$CACHE/apt/$1"; }
suite_apt_opts() {
    local d
    d=$(suite_dir "$1")
    printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=/dev/null" \
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" \
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
    # SUITE-arm64: the same suite's arm64 packages only (kernels, cross libraries).
    case "$1" in *-arm64) printf '%s\n' -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" ;; esac
}

# The URI of the machine's own Debian mirror (deb822 or one-line sources), else deb.debian.org;
# with `security`, the security mirror.
debian_mirror() {
    local kind=${1:-main} uri="" pat='grep -v security'
    [ "$kind" = security ] && pat='grep security'
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources | $pat | head -1 || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
            /etc/apt/sources.list | $pat | head -1 || true)
    fi
    if [ -z "$uri" ]; then
        if [ "$kind" = security ]; then uri=http://deb.debian.org/debian-security; else uri=http://deb.debian.org/debian; fi
    fi
    echo "$uri"
}

# Sets up (refreshed once a day at most) the private lists of SUITE: trixie (main suite only, so
# linux-source-6.12 changes with point releases, not with every security upload), trixie-arm64
# (the same for arm64), sid (7.2), or bookworm / bullseye (with -updates and -security: their
# 6.1 / 5.10 kernels live there).
suite_update() {
    local suite=$1 d want key="signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
    d=$(suite_dir "$suite")
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    case "$suite" in
        trixie) want="deb [$key] $(debian_mirror) trixie main" ;;
        trixie-arm64) want="deb [arch=arm64 $key] $(debian_mirror) trixie main" ;;
        # sid: linux-source-7.2, the stock 7.2 kernel, rust-src (the aarch64 cross std).
        sid) want="deb [$key] $(debian_mirror) sid main" ;;
        bookworm | bullseye)
            want="deb [$key] $(debian_mirror) $suite main
deb [$key] $(debian_mirror) $suite-updates main
deb [$key] $(debian_mirror security) $suite-security main" ;;
        *) die "unknown suite $suite" ;;
    esac
    if [ -f "$d/sources.list" ] && [ "$(cat "$d/sources.list")" = "$want" ] &&
        [ -n "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
        return 0
    fi
    echo "$want" >"$d/sources.list"
    log "apt-get update ($suite, private lists in $d)"
    # shellcheck disable=SC2046
    apt-get $(suite_apt_opts "$suite") update -q >&2 || die "apt-get update for $suite failed"
}

suite_apt_cache() {
    local suite=$1
    shift
    # shellcheck disable=SC2046
    apt-cache $(suite_apt_opts "$suite") "$@"
}

# Candidate version of a package in SUITE.
pkg_version() {
    suite_apt_cache "$1" policy "$2" | awk '/Candidate:/ {print $2}'
}

# The concrete package behind a metapackage (e.g. linux-image-amd64 -> linux-image-6.12.48+deb13-amd64).
resolve_image_pkg() {
    local dep
    dep=$(suite_apt_cache "$1" depends "$2" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$dep" ] || die "cannot resolve $2 in $1"
    echo "$dep"
}

# Downloads a package into $CACHE/debs (once) and prints the .deb path.
download_deb() {
    local suite=$1 pkg=$2 ver deb pat
    ver=$(pkg_version "$suite" "$pkg")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "package $pkg not found in $suite"
    mkdir -p "$CACHE/debs"
    # apt-get download writes an epoch as `E%3a` in the file name.
    pat="${pkg}_$(echo "$ver" | sed 's/^\([0-9]*\):/\1%3a/')_*.deb"
    deb=$(find "$CACHE/debs" -maxdepth 1 -name "$pat" | head -1)
    if [ -z "$deb" ]; then
        log "downloading $pkg $ver ($suite)"
        # shellcheck disable=SC2046
        (cd "$CACHE/debs" && apt-get $(suite_apt_opts "$suite") download -q "$pkg=$ver" >&2) ||
            die "download of $pkg failed"
        deb=$(find "$CACHE/debs" -maxdepth 1 -name "$pat" | head -1)
    fi
    [ -n "$deb" ] || die "downloaded $pkg but cannot find its .deb"
    echo "$deb"
}

# Serialises kernel fetches/builds between runs that share the cache (held until the script exits).
lock_cache() {
    exec 9>"$CACHE/.kernels.lock"
    if ! flock -n 9; then
        log "waiting for another hw-test run to finish fetching/building kernels"
        flock 9
    fi
}

# The aarch64 VMs' busybox: trixie's busybox-static for arm64, unpacked once into
# $CACHE/cross/busybox-arm64-V/. Prints its path.
arm64_busybox() {
    local ver d deb
    suite_update trixie-arm64
    ver=$(pkg_version trixie-arm64 busybox-static)
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "busybox-static not found in trixie (arm64)"
    d="$CACHE/cross/busybox-arm64-${ver#*:}"
    if [ ! -x "$d/busybox" ]; then
        deb=$(download_deb trixie-arm64 busybox-static)
        rm -rf "$d.tmp"
        mkdir -p "$d.tmp"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$d.tmp" --wildcards '*bin/busybox'
        find "$d.tmp" -name busybox -type f -exec mv {} "$d.tmp/busybox" \;
        rm -rf "$d"
        mv "$d.tmp" "$d"
    fi
    echo "$d/busybox"
}
