#!/usr/bin/env bash
# build.sh OUTDIR — builds the PVH test guests (OUTDIR/NAME.elf) with the host gcc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
flags=(-O2 -ffreestanding -nostdlib -fno-pie -no-pie -static -fno-stack-protector -mno-red-zone
       -mgeneral-regs-only -fno-asynchronous-unwind-tables -Wall -Werror -Wl,--build-id=none
       -Wl,-T,"$here/guest.lds" -Wl,-z,noexecstack)
for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    extra=()
    # Guests using the virtio driver library (guests/pvh/virtio) link its sources too.
    if grep -q '#include "virtio/' "$src"; then extra=("$here"/virtio/*.c); fi
    gcc "${flags[@]}" -o "$out/$name.elf.tmp" "$here/start.S" "$src" ${extra[@]+"${extra[@]}"}
    mv "$out/$name.elf.tmp" "$out/$name.elf"
done
