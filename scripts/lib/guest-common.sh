# Shared helpers for scripts/make-guest and scripts/nested-kvm (sourced, bash).
#
# Everything comes from Debian packages fetched with `apt-get download` into a download cache that
# both scripts share:
#   ${SWIFTLET_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/swiftlet-guest}
#     debs/                  downloaded .deb files (reused; never deleted by these scripts)
#     kernel-<ver>/          the cloud kernel package unpacked, with modules.dep made by depmod
#     busybox-<debversion>/  busybox-static unpacked
#     tools/swiftlet-exit    the debug-exit helper, built with gcc -static
# The cache is locked with flock while it is written, so parallel runs are safe.

# shellcheck shell=bash

SWIFTLET_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SWIFTLET_REPO_DIR=$(cd "$SWIFTLET_SCRIPTS_DIR/.." && pwd)
GUEST_CACHE=${SWIFTLET_GUEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/swiftlet-guest}
# The Debian meta package whose dependency names the kernel we use.
GUEST_KERNEL_META=${SWIFTLET_KERNEL_PACKAGE:-linux-image-cloud-amd64}

# Progress and errors go to stderr, with the script's name in front.
_prog=${_prog:-$(basename "$0")}
say()  { printf '%s: %s\n' "$_prog" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$_prog" "$*" >&2; exit "${DIE_STATUS:-1}"; }

_now_ms() { date +%s%3N; }

# ensure_tools CMD:PACKAGE ... — install the Debian packages of the missing commands.
_apt_updated=
apt_update_once() {
    [[ -n $_apt_updated ]] && return 0
    say "apt-get update"
    apt-get update -qq >&2 || say "warning: apt-get update failed; trying with the lists there are"
    _apt_updated=1
}
ensure_tools() {
    local pair cmd pkg missing=()
    for pair in "$@"; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        if [[ $cmd == /* ]]; then [[ -e $cmd ]] && continue
        else command -v "$cmd" >/dev/null 2>&1 && continue; fi
        missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); install them or run as root"
    apt_update_once
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# The tools both scripts need on the host.
ensure_host_tools() {
    ensure_tools apt-get:apt dpkg-deb:dpkg cpio:cpio depmod:kmod gzip:gzip zstd:zstd flock:util-linux "$@"
}

# resolve_packages: which .deb files make up the guest, with as few apt calls as possible (each
# costs about a second here). Sets GUEST_KERNEL_PKG (the linux-image-<ver>-cloud-amd64 package
# that GUEST_KERNEL_META depends on) and DEB_FILE[pkg] / DEB_SIZE[pkg] for it and busybox-static.
# Memoized in $GUEST_CACHE/resolved until the apt lists change (apt-get update). Runs apt-get
# update when the lists do not know the packages. Offline with empty lists, falls back to the
# newest .debs in the cache.
declare -A DEB_FILE=() DEB_SIZE=()
GUEST_KERNEL_PKG=
_resolve_from_apt() {
    local dep uris
    dep=$(apt-cache show --no-all-versions "$GUEST_KERNEL_META" 2>/dev/null \
          | sed -n 's/^Depends: *//p' | tr ',' '\n' | sed 's/ *(.*//; s/^ *//' \
          | grep -E '^linux-image-[0-9]' | head -n1) || return 1
    [[ -n $dep ]] || return 1
    # 'URI' FILENAME SIZE HASH, one line per package
    uris=$(apt-get download --print-uris "$dep" busybox-static 2>/dev/null) || return 1
    [[ $(wc -l <<<"$uris") -ge 2 ]] || return 1
    {
        printf 'meta %s\n' "$GUEST_KERNEL_META"
        printf 'kernel %s\n' "$dep"
        awk '{ f = $2; p = f; sub(/_.*/, "", p); print "deb", p, f, $3 }' <<<"$uris"
    } >"$GUEST_CACHE/resolved.tmp"
    mv -f "$GUEST_CACHE/resolved.tmp" "$GUEST_CACHE/resolved"
}
_load_resolved() {
    local kind a b c
    DEB_FILE=() DEB_SIZE=() GUEST_KERNEL_PKG=
    [[ -s $1 ]] || return 1
    grep -qx "meta $GUEST_KERNEL_META" "$1" || return 1
    while read -r kind a b c; do
        case $kind in
            kernel) GUEST_KERNEL_PKG=$a ;;
            deb) DEB_FILE[$a]=$b; DEB_SIZE[$a]=$c ;;
        esac
    done <"$1"
    [[ -n $GUEST_KERNEL_PKG && -n ${DEB_FILE[$GUEST_KERNEL_PKG]:-} && -n ${DEB_FILE[busybox-static]:-} ]]
}
resolve_packages() {
    local memo="$GUEST_CACHE/resolved" lists=/var/lib/apt/lists
    mkdir -p "$GUEST_CACHE/debs"
    if [[ $memo -nt $lists ]] && _load_resolved "$memo"; then return 0; fi
    if _resolve_from_apt || { apt_update_once; _resolve_from_apt; }; then
        _load_resolved "$memo" && return 0
    fi
    # Offline: the newest cached packages.
    local k b
    k=$(ls -t "$GUEST_CACHE"/debs/linux-image-[0-9]*_*.deb 2>/dev/null | head -n1) || true
    b=$(ls -t "$GUEST_CACHE"/debs/busybox-static_*.deb 2>/dev/null | head -n1) || true
    [[ -n $k && -n $b ]] || die "cannot resolve $GUEST_KERNEL_META / busybox-static with apt, and nothing is cached in $GUEST_CACHE/debs"
    say "warning: apt cannot resolve the packages; using the newest cached ones"
    GUEST_KERNEL_PKG=$(basename "${k%%_*}")
    DEB_FILE=([$GUEST_KERNEL_PKG]=$(basename "$k") [busybox-static]=$(basename "$b"))
    DEB_SIZE=([$GUEST_KERNEL_PKG]=0 [busybox-static]=0)
}

# fetch_deb PACKAGE -> sets DEB to the path of its .deb in the cache, downloading it when not there.
# (Not a $(...) function: downloads show progress on stderr and errors must end the script.)
fetch_deb() {
    local pkg=$1 dir="$GUEST_CACHE/debs" file=${DEB_FILE[$1]:-}
    [[ -n $file ]] || die "internal: package $pkg not resolved"
    DEB="$dir/$file"
    if [[ -s $DEB ]]; then say "cached: $file"; return 0; fi
    say "downloading $pkg ($(awk -v s="${DEB_SIZE[$pkg]}" 'BEGIN { printf "%.1f MB", s / 1e6 }'))"
    local tmp; tmp=$(mktemp -d "$dir/.dl.XXXXXX")
    if (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) && [[ -s $tmp/$file ]]; then
        mv -f "$tmp/$file" "$DEB"; rm -rf "$tmp"; return 0
    fi
    rm -rf "$tmp"
    die "apt-get download $pkg failed (wanted $file)"
}

# with_cache_lock CMD... — run CMD holding the cache lock.
with_cache_lock() {
    mkdir -p "$GUEST_CACHE"
    (
        flock 9
        "$@"
    ) 9>"$GUEST_CACHE/.lock"
}

# prepare_kernel: sets KVER (kernel release) and KROOT (unpacked package root, with
# KROOT/boot/vmlinuz-KVER and KROOT/lib/modules/KVER/modules.dep).
_unpack_kernel() {
    local deb=$1 dest=$2
    [[ -f $dest/.done ]] && return 0
    say "unpacking $(basename "$deb")"
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    dpkg-deb -x "$deb" "$dest.tmp"
    local ver; ver=$(basename "$(ls -d "$dest.tmp"/lib/modules/*/ | head -n1)")
    depmod -b "$dest.tmp" "$ver"
    touch "$dest.tmp/.done"
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
}
prepare_kernel() {
    local deb
    [[ -n $GUEST_KERNEL_PKG ]] || resolve_packages
    fetch_deb "$GUEST_KERNEL_PKG"; deb=$DEB
    local base; base=$(basename "$deb" .deb)
    KROOT="$GUEST_CACHE/kernel-$base"
    with_cache_lock _unpack_kernel "$deb" "$KROOT"
    KVER=$(basename "$(ls -d "$KROOT"/lib/modules/*/ | head -n1)")
    [[ -f $KROOT/boot/vmlinuz-$KVER ]] || die "no vmlinuz-$KVER in $deb"
    KVMLINUZ="$KROOT/boot/vmlinuz-$KVER"
    KMODDIR="$KROOT/lib/modules/$KVER"
}

# prepare_busybox: sets BUSYBOX (path of the static busybox binary from busybox-static).
_unpack_busybox() {
    local deb=$1 dest=$2
    [[ -f $dest/.done ]] && return 0
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    dpkg-deb -x "$deb" "$dest.tmp"
    touch "$dest.tmp/.done"
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
}
prepare_busybox() {
    [[ -n $GUEST_KERNEL_PKG ]] || resolve_packages
    local deb; fetch_deb busybox-static; deb=$DEB
    local dest; dest="$GUEST_CACHE/$(basename "$deb" .deb)"
    with_cache_lock _unpack_busybox "$deb" "$dest"
    BUSYBOX="$dest/bin/busybox"
    [[ -x $BUSYBOX ]] || die "no bin/busybox in $deb"
}

# prepare_exit_helper: sets EXIT_HELPER (static swiftlet-exit built from scripts/guest-init).
_build_exit_helper() {
    local src=$1 out=$2
    if [[ -x $out && $out -nt $src ]]; then return 0; fi
    say "building swiftlet-exit (gcc -static)"
    mkdir -p "$(dirname "$out")"
    gcc -static -Os -s -Wall -o "$out.tmp" "$src" || die "gcc -static failed for $src"
    mv -f "$out.tmp" "$out"
}
prepare_exit_helper() {
    local src="$SWIFTLET_SCRIPTS_DIR/guest-init/swiftlet-exit.c"
    EXIT_HELPER="$GUEST_CACHE/tools/swiftlet-exit"
    with_cache_lock _build_exit_helper "$src" "$EXIT_HELPER"
}

# module_load_order MODNAME... -> module paths (relative to KMODDIR), dependencies first, each once.
# Names match with '-' and '_' alike (virtio_rng is virtio-rng.ko). Built-in and unknown modules are
# skipped (a note for unknown ones).
module_load_order() {
    declare -A _seen=()
    local _order=()
    _mlo_visit() {
        local path=$1 line deps d i
        [[ -n ${_seen[$path]:-} ]] && return 0
        _seen[$path]=1
        line=$(grep -m1 -E "^${path//./\\.}:" "$KMODDIR/modules.dep") || return 0
        read -r -a deps <<<"${line#*:}"
        # modules.dep lists the dependency needed last first: load from the end.
        for ((i=${#deps[@]}-1; i>=0; i--)); do _mlo_visit "${deps[i]}"; done
        _order+=("$path")
    }
    local name re path
    for name in "$@"; do
        re=${name//[-_]/[-_]}
        path=$(grep -m1 -oE "^[^:]*/${re}\.ko(\.[a-z]+)?:" "$KMODDIR/modules.dep" | tr -d :) || true
        if [[ -z $path ]]; then
            grep -qE "/${re}\.ko" "$KMODDIR/modules.builtin" \
                || say "note: module $name is neither in modules.dep nor built in"
            continue
        fi
        _mlo_visit "$path"
    done
    printf '%s\n' "${_order[@]}"
}

# copy_module_into ROOT RELPATH — copy one module to ROOT/lib/modules/KVER/RELPATH, uncompressed.
copy_module_into() {
    local root=$1 rel=$2 dst
    dst="$root/lib/modules/$KVER/${rel%.xz}"; dst=${dst%.zst}; dst=${dst%.gz}
    mkdir -p "$(dirname "$dst")"
    case $rel in
        *.ko.xz)  xz -dc "$KMODDIR/$rel" >"$dst" ;;
        *.ko.zst) zstd -qdc "$KMODDIR/$rel" >"$dst" ;;
        *.ko.gz)  gzip -dc "$KMODDIR/$rel" >"$dst" ;;
        *)        cp "$KMODDIR/$rel" "$dst" ;;
    esac
    printf '%s\n' "${dst#"$root"}"
}

# make_base_root ROOT — the skeleton every initramfs here shares: busybox with /bin/sh, the dirs,
# /dev/console (the kernel opens it for init's stdio before anything is mounted).
make_base_root() {
    local root=$1
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,lib/modules}
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    ln -sf busybox "$root/bin/sh"
    # /dev/console and /dev/null are added by make_cpio as cpio entries (no mknod, so no root).
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    printf 'swiftlet\n' >"$root/etc/hostname"
}

# _cpio_chardev NAME MODE MAJOR MINOR — one newc entry for a character device (then the trailer), so
# device nodes need neither mknod nor root. The kernel unpacks concatenated archives in order.
_cpio_chardev() {
    local name=$1 mode=$(( 0020000 | $2 )) major=$3 minor=$4 namesize=$(( ${#1} + 1 ))
    _cpio_entry() { # name mode rdevmajor rdevminor namesize
        printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
            0 "$2" 0 0 1 "${SOURCE_DATE_EPOCH:-0}" 0 0 0 "$3" "$4" "$5" 0
        printf '%s\0' "$1"
        # header (110 bytes) + name padded to a multiple of 4
        local pad=$(( (4 - (110 + $5) % 4) % 4 ))
        ((pad)) && head -c "$pad" /dev/zero
        return 0
    }
    _cpio_entry "$name" "$mode" "$major" "$minor" "$namesize"
    _cpio_entry TRAILER!!! 0 0 0 11
}

# make_cpio ROOT OUT COMPRESSOR — newc cpio of ROOT, owned by root, compressed with
# COMPRESSOR (gzip | zstd | none).
make_cpio() {
    local root=$1 out=$2 comp=${3:-gzip}
    local c
    case $comp in
        gzip) c=(gzip -n -6) ;;
        zstd) c=(zstd -q -19 -T0 --stdout) ;;
        none) c=(cat) ;;
        *) die "unknown compressor $comp" ;;
    esac
    # Reproducible: fixed mtimes (SOURCE_DATE_EPOCH or 0), sorted names, no inode/device numbers.
    find "$root" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
    {
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet)
        _cpio_chardev dev/console 0600 5 1
        _cpio_chardev dev/null 0666 1 3
    } | "${c[@]}" >"$out.tmp"
    mv -f "$out.tmp" "$out"
}
