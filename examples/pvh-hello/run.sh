#!/usr/bin/env bash
# examples/pvh-hello/run.sh: builds a freestanding PVH guest (guests/pvh/hello.c, the host's gcc, no
# Linux) and boots it with `swiftlet run`. It prints what Swiftlet handed over (its command line,
# memory map, an initrd and the ACPI RSDP) and exits 42 through the debug-exit port. It runs on any
# KVM, hardware or this project's software kvm_pvm alike.
#
#   examples/pvh-hello/run.sh [SWIFTLET]      SWIFTLET: the swiftlet to use (default: swiftlet on PATH)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
swiftlet=${1:-$(command -v swiftlet || true)}
[[ -n $swiftlet && -x $swiftlet ]] || { echo "pvh-hello: no swiftlet on PATH (scripts/install, or give its path)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "pvh-hello: gcc is needed to build the guest (apt-get install gcc)" >&2; exit 1; }
work=$(mktemp -d -t swiftlet-pvh-hello.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The guest's sources: guests/pvh in a checkout; a copy beside this script once installed
# (scripts/install puts it in PREFIX/share/doc/swiftlet/examples/pvh-hello/guest).
guests=$here/guest
[[ -r $guests/build.sh ]] || guests=$here/../../guests/pvh
[[ -r $guests/build.sh ]] || { echo "pvh-hello: the guest's sources (guests/pvh) are missing" >&2; exit 1; }
bash "$guests/build.sh" "$work" >&2
echo "initrd contents from the host" >"$work/initrd"

echo "pvh-hello: $swiftlet run --kernel hello.elf --initrd initrd --cmdline 'hello from examples/pvh-hello' --memory 64M" >&2
status=0
"$swiftlet" run --kernel "$work/hello.elf" --initrd "$work/initrd" \
    --cmdline "hello from examples/pvh-hello" --memory 64M </dev/null || status=$?
if [[ $status == 42 ]]; then
    echo "pvh-hello: the guest exited 42 through the debug-exit port, as it should" >&2
    exit 0
fi
echo "pvh-hello: swiftlet exited $status (the guest exits 42)" >&2
exit 1
