# Shared helpers of scripts/hw-test (sourced, not run).
#
# Cache layout (UNIBUF_CACHE, default ~/.cache/unibuf):
#   apt/trixie/         a private apt sources list + lists for Debian trixie (the system's stay untouched)
#   debs/               downloaded .deb packages (linux-source-6.12, linux-image-*)
#   src/linux-source-V/ the unpacked kernel tree the custom kernel is built in (kept for incremental rebuilds)
#   kernels/custom-V-H/ bzImage + config of the custom kernel (V = source package version, H = fragment hash)
#   kernels/debian-6.12-V/, kernels/debian-6.1-V/
#                       vmlinuz + modules/ (decompressed .ko, only what the tests need and their
#                       dependencies) + modules/load-order (insmod order)
#   runs/               per-run initramfs and serial logs (the last run of each kernel)

CACHE="${UNIBUF_CACHE:-$HOME/.cache/unibuf}"
mkdir -p "$CACHE"

log() { printf '[hw-test %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[hw-test] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages the harness needs, once (dpkg -s tells what is there already).
install_host_deps() {
    local want=(qemu-system-x86 busybox-static cpio bc bison flex libelf-dev libssl-dev xz-utils zstd
        kmod build-essential ca-certificates)
    local missing=()
    local p
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    log "installing ${missing[*]}"
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# apt options that point apt at the private trixie lists.
TRIXIE_DIR="$CACHE/apt/trixie"
trixie_apt_opts() {
    printf '%s\n' -o "Dir::Etc::SourceList=$TRIXIE_DIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null" \
        -o "Dir::State::Lists=$TRIXIE_DIR/lists" -o "Dir::Cache=$TRIXIE_DIR/cache" \
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
}

# The URI of the machine's own Debian mirror (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources | grep -v security | head -1)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# Sets up (once a day at most) the private trixie lists.
trixie_update() {
    mkdir -p "$TRIXIE_DIR/lists/partial" "$TRIXIE_DIR/cache/archives/partial"
    local mirror
    mirror=$(debian_mirror)
    local want="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main"
    if [ -f "$TRIXIE_DIR/sources.list" ] && [ "$(cat "$TRIXIE_DIR/sources.list")" = "$want" ] &&
        [ -n "$(find "$TRIXIE_DIR/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
        return 0
    fi
    echo "$want" >"$TRIXIE_DIR/sources.list"
    log "apt-get update (trixie, private lists in $TRIXIE_DIR)"
    # shellcheck disable=SC2046
    apt-get $(trixie_apt_opts) update -q >&2 || die "apt-get update for trixie failed"
}

# trixie_apt CMD ARGS...: apt-get/apt-cache against the private trixie lists.
trixie_apt_cache() {
    # shellcheck disable=SC2046
    apt-cache $(trixie_apt_opts) "$@"
}

# Candidate version of a package (system lists, or trixie when $1 = trixie).
pkg_version() {
    local suite=$1 pkg=$2
    if [ "$suite" = trixie ]; then
        trixie_apt_cache policy "$pkg" | awk '/Candidate:/ {print $2}'
    else
        apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}'
    fi
}

# The concrete package behind a metapackage (e.g. linux-image-amd64 -> linux-image-6.12.48+deb13-amd64).
# Prefers the -unsigned flavour (same kernel, no signature wrapper) when it exists.
resolve_image_pkg() {
    local suite=$1 meta=$2 dep
    if [ "$suite" = trixie ]; then
        dep=$(trixie_apt_cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    else
        dep=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    [ -n "$dep" ] || die "cannot resolve $meta in $suite"
    echo "$dep"
}

# Downloads a package into $CACHE/debs (once) and prints the .deb path.
download_deb() {
    local suite=$1 pkg=$2 ver deb
    ver=$(pkg_version "$suite" "$pkg")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "package $pkg not found in $suite"
    mkdir -p "$CACHE/debs"
    deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_$(echo "$ver" | sed 's/^[0-9]*://')_*.deb" | head -1)
    if [ -z "$deb" ]; then
        log "downloading $pkg $ver ($suite)"
        if [ "$suite" = trixie ]; then
            # shellcheck disable=SC2046
            (cd "$CACHE/debs" && apt-get $(trixie_apt_opts) download -q "$pkg=$ver" >&2) || die "download of $pkg failed"
        else
            (cd "$CACHE/debs" && apt-get -o APT::Sandbox::User=root download -q "$pkg=$ver" >&2) || die "download of $pkg failed"
        fi
        deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_$(echo "$ver" | sed 's/^[0-9]*://')_*.deb" | head -1)
    fi
    [ -n "$deb" ] || die "downloaded $pkg but cannot find its .deb"
    echo "$deb"
}
