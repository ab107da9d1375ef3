#!/bin/sh
# build.sh OUTDIR - build every hvt test guest to OUTDIR/NAME.hvt.
# Uses the host gcc (override with CC=...). Idempotent; fails loudly.
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

CFLAGS="-O2 -ffreestanding -nostdlib -fno-pie -no-pie -static \
-fno-stack-protector -mno-red-zone -fno-asynchronous-unwind-tables \
-mcmodel=small $FPFLAGS -Wall -Wextra -Werror -I$HERE/include $HVT_CFLAGS"
LDFLAGS="-Wl,-T,$HERE/hvt.lds -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 \
-Wl,-z,noexecstack"
RUNTIME="$HERE/runtime/start.S $HERE/runtime/runtime.c"

GUESTS=$(cd "$HERE/src" && ls *.c | sed 's/\.c$//')

pids=""
for g in $GUESTS; do
    (
        # Build to a temporary name so a failed build never leaves a stale
        # or truncated OUTDIR/NAME.hvt behind.
        $CC $CFLAGS $RUNTIME "$HERE/src/$g.c" $LDFLAGS -o "$OUT/.$g.hvt.tmp" &&
            mv -f "$OUT/.$g.hvt.tmp" "$OUT/$g.hvt" ||
            { rm -f "$OUT/.$g.hvt.tmp"; echo "build.sh: FAILED to build $g" >&2; exit 1; }
    ) &
    pids="$pids $!"
done

status=0
for p in $pids; do
    wait "$p" || status=1
done
if [ $status -ne 0 ]; then
    echo "build.sh: build failed" >&2
    exit 1
fi
