#!/bin/sh
# build.sh OUTDIR - build every hvt test guest for hvt ABI 2 (what Solo5
# 0.8.0 .. v0.12.1 build) to OUTDIR/NAME.hvt, and for ABI 1 (Solo5 0.7 and
# older) to OUTDIR/abi1/NAME.hvt. A guest whose source says "hvt-abi: 2"
# is built for ABI 2 only. Uses the host gcc (override with CC=...).
# Idempotent; fails loudly.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CC=${CC:-gcc}
# Extra compiler flags (appended), e.g. HVT_CFLAGS=-O0.
HVT_CFLAGS=${HVT_CFLAGS:-}
# Guests are built without SSE/x87 code generation by default so that they
# also run where KVM has to emulate every guest instruction (e.g. the kvm_pvm
# module, whose instruction emulator cannot execute most SSE instructions).
# The "sse" guest tests SSE explicitly. HVT_SSE=1 lets gcc use SSE everywhere.
if [ "${HVT_SSE:-0}" = 1 ]; then
    FPFLAGS=""
else
    FPFLAGS="-mgeneral-regs-only"
fi

# -g: debug info (not loaded into the guest) so gdb can show source, variables and
# backtraces under --gdb and in core files.
CFLAGS="-O2 -g -ffreestanding -nostdlib -fno-pie -no-pie -static \
-fno-stack-protector -mno-red-zone -fno-asynchronous-unwind-tables \
-mcmodel=small $FPFLAGS -Wall -Wextra -Werror -I$HERE/include $HVT_CFLAGS"
LDCOMMON="-Wl,--build-id=none -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack"
RUNTIME="$HERE/runtime/start.S $HERE/runtime/runtime.c"

GUESTS=$(cd "$HERE/src" && ls *.c | sed 's/\.c$//')
mkdir -p "$OUT/abi1" "$OUT/.lib"

# The network driver (ring and hypercalls) goes into an archive per ABI, so
# only guests that send or receive frames link its 2 MiB of write slots.
for abi in 1 2; do
    $CC $CFLAGS -DHVT_ABI=$abi -c "$HERE/runtime/netring.c" -o "$OUT/.lib/netring$abi.o"
    rm -f "$OUT/.lib/libhvtnet$abi.a"
    ar rcs "$OUT/.lib/libhvtnet$abi.a" "$OUT/.lib/netring$abi.o"
done

pids=""
for g in $GUESTS; do
    for abi in 2 1; do
        if [ $abi = 1 ] && grep -q 'hvt-abi: 2' "$HERE/src/$g.c"; then continue; fi
        if [ $abi = 2 ]; then dest="$OUT/$g.hvt" lds="$HERE/hvt2.lds"; else dest="$OUT/abi1/$g.hvt" lds="$HERE/hvt.lds"; fi
        (
            # Build to a temporary name so a failed build never leaves a stale
            # or truncated NAME.hvt behind.
            $CC $CFLAGS -DHVT_ABI=$abi $RUNTIME "$HERE/src/$g.c" -Wl,-T,"$lds" $LDCOMMON \
                "$OUT/.lib/libhvtnet$abi.a" -o "$dest.tmp" &&
                mv -f "$dest.tmp" "$dest" ||
                { rm -f "$dest.tmp"; echo "build.sh: FAILED to build $g (ABI $abi)" >&2; exit 1; }
        ) &
        pids="$pids $!"
    done
done

status=0
for p in $pids; do
    wait "$p" || status=1
done
if [ $status -ne 0 ]; then
    echo "build.sh: build failed" >&2
    exit 1
fi
