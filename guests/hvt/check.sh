#!/bin/sh
# check.sh OUTDIR - sanity-check the ELF layout of every OUTDIR/*.hvt (ABI 2, as
# Solo5 v0.12.1's toolchain lays images out) and OUTDIR/abi1/*.hvt (ABI 1) with
# readelf, and print one line per guest:
#   both: ET_EXEC/x86-64, text PT_LOAD (R E) at 0x100000, then R and RW
#         PT_LOADs, the Solo5 ABI note (of the right version) and MFT1 manifest
#         note in PT_NOTEs, manifest version 1, entry count consistent with its
#         size, entry 0 the reserved entry;
#   ABI 2: also PT_INTERP /nonexistent/solo5/, an empty PT_LOAD at 0, a PT_TLS,
#          and the OpenBSD note in a third PT_NOTE;
#   ABI 1: exactly those three PT_LOADs and two PT_NOTEs, nothing dynamic.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
fail=0
check() { # FILE ABI
    f=$1 abi=$2 err=""
    h=$(readelf -hW "$f")
    echo "$h" | grep -q 'Type: *EXEC' || err="$err not-ET_EXEC"
    echo "$h" | grep -q 'Machine: *Advanced Micro Devices X86-64' || err="$err not-x86_64"
    l=$(readelf -lW "$f")
    loads=$(echo "$l" | awk '$1 == "LOAD" { f = $7; if ($8 != "0x1000") f = f $8; printf "%s:%s ", $3, f }')
    notes=$(echo "$l" | grep -c '^ *NOTE ' || true)
    if [ "$abi" = 2 ]; then
        case "$loads" in
            "0x0000000000100000:RE 0x"*":R 0x"*":RW 0x0000000000000000:R ") ;;
            *) err="$err bad-PT_LOADs($loads)" ;;
        esac
        echo "$l" | grep -q 'program interpreter: /nonexistent/solo5/' || err="$err no-PT_INTERP"
        echo "$l" | grep -q '^ *TLS ' || err="$err no-PT_TLS"
        [ "$notes" = 3 ] || err="$err want-3-PT_NOTE"
        readelf -nW "$f" | grep -q 'OpenBSD' || err="$err no-not_openbsd-note"
    else
        case "$loads" in
            "0x0000000000100000:RE 0x"*":R 0x"*":RW ") ;;
            *) err="$err bad-PT_LOADs($loads)" ;;
        esac
        [ "$notes" = 2 ] || err="$err want-2-PT_NOTE"
        if echo "$l" | grep -q 'INTERP\|DYNAMIC'; then err="$err dynamic"; fi
    fi
    n=$(readelf -nW "$f")
    echo "$n" | grep -q 'Solo5 .*0x00000010.*0x31494241' || err="$err no-ABI-note"
    echo "$n" | grep -q 'Solo5 .*0x3154464d' || err="$err no-MFT1-note"
    # ABI note descriptor: target 1, version $abi (the words after "description data:").
    echo "$n" | grep -A1 '0x31494241' | grep -q "data: 01 00 00 00 0$abi 00 00 00" || err="$err abi-version-not-$abi"
    # Manifest: descsz, version, entries, entry 0's type (u32 at +4, +24, +28, +100).
    line=$(readelf -SW "$f" | grep ' .note.solo5.manifest ' || true)
    ents=?
    if [ -z "$line" ]; then
        err="$err no-manifest-section"
    else
        off=$((0x$(echo "$line" | sed 's/^.*]//' | awk '{ print $4 }')))
        words=$(od -v -A n -t u4 -j "$off" -N 104 "$f")
        descsz=$(echo $words | awk '{ print $2 }')
        ver=$(echo $words | awk '{ print $7 }')
        ents=$(echo $words | awk '{ print $8 }')
        type0=$(echo $words | awk '{ print $26 }')
        [ "$ver" = 1 ] || err="$err mft-version-$ver"
        [ "$descsz" = $((12 + 104 * ents)) ] || err="$err mft-descsz-$descsz-for-$ents-entries"
        [ "$type0" = 1073741824 ] || err="$err entry-0-not-reserved($type0)"
    fi
    if [ -n "$err" ]; then
        echo "FAIL $f:$err"
        fail=1
    else
        echo "ok   $f: ABI $abi, manifest entries=$ents"
    fi
}
for f in "$1"/*.hvt; do check "$f" 2; done
for f in "$1"/abi1/*.hvt; do [ -e "$f" ] && check "$f" 1; done
exit $fail
