#!/bin/sh
# check.sh OUTDIR - sanity-check the ELF layout of every OUTDIR/*.hvt with
# readelf: ET_EXEC/x86-64, entry in text, three PT_LOADs (R E, R, RW) with
# text at 0x100000, the two Solo5 notes in PT_NOTEs, and the manifest's
# version/entry count consistent with its size. Prints one line per guest.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
fail=0
for f in "$1"/*.hvt; do
    err=""
    h=$(readelf -hW "$f")
    echo "$h" | grep -q 'Type: *EXEC' || err="$err not-ET_EXEC"
    echo "$h" | grep -q 'Machine: *Advanced Micro Devices X86-64' || err="$err not-x86_64"
    l=$(readelf -lW "$f")
    loads=$(echo "$l" | awk '$1 == "LOAD" { f = $7; if ($8 != "0x1000") f = f $8; printf "%s:%s ", $3, f }')
    case "$loads" in
        "0x0000000000100000:RE 0x"*":R 0x"*":RW ") ;;
        *) err="$err bad-PT_LOADs($loads)" ;;
    esac
    [ "$(echo "$l" | grep -c '^ *NOTE ')" = 2 ] || err="$err want-2-PT_NOTE"
    if echo "$l" | grep -q 'INTERP\|DYNAMIC'; then err="$err dynamic"; fi
    n=$(readelf -nW "$f")
    echo "$n" | grep -q 'Solo5 .*0x00000010.*0x31494241' || err="$err no-ABI1-note"
    echo "$n" | grep -q 'Solo5 .*0x3154464d' || err="$err no-MFT1-note"
    # Manifest: descsz, version, entries (little endian u32 at +4, +24, +28).
    line=$(readelf -SW "$f" | grep ' .note.solo5.manifest ' || true)
    if [ -z "$line" ]; then
        err="$err no-manifest-section"
    else
        off=$((0x$(echo "$line" | sed 's/^.*]//' | awk '{ print $4 }')))
        words=$(od -A n -t u4 -j "$off" -N 32 "$f")
        descsz=$(echo $words | awk '{ print $2 }')
        ver=$(echo $words | awk '{ print $7 }')
        ents=$(echo $words | awk '{ print $8 }')
        [ "$ver" = 1 ] || err="$err mft-version-$ver"
        [ "$descsz" = $((12 + 104 * ents)) ] ||
            err="$err mft-descsz-$descsz-for-$ents-entries"
    fi
    if [ -n "$err" ]; then
        echo "FAIL $(basename "$f"):$err"
        fail=1
    else
        echo "ok   $(basename "$f"): manifest entries=$ents"
    fi
done
exit $fail
