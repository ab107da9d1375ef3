#!/bin/sh
# l1-run.sh RUNS WARMUP TIMEOUT_S [MACHINE [MEM_DELAY_MS]] — bench/boot's runs, inside the L1 VM of scripts/nested-kvm
# (busybox sh, in /share). Boots the guest (vmlinuz, initrd.img) WARMUP times uncounted, then RUNS
# times, under Swiftlet (/usr/bin/swiftlet) and QEMU microvm (/share/qemu/...), alternating (the
# order flips every round so neither VMM always goes first), 1 vCPU / 128 MiB each, one VM at a
# time. Each run goes through ./boottime, which prints `T|F NAME INIT_MS EXIT_MS STATUS UPTIME`;
# warm-up runs are named swiftlet-warmup / qemu-warmup. MACHINE is QEMU's -M value (default microvm).
# With MEM_DELAY_MS the guest waits 3 s after the marker and boottime reads each VMM's memory
# MEM_DELAY_MS after it (`mem RSS PSS GUEST_RSS GUEST_PSS` at the end of the line).
# Exit status: 0 when every run was fine, 1 otherwise.
runs=${1:-10} warmup=${2:-1} timeout=${3:-120} machine=${4:-microvm} mem_delay=${5:-}
marker=BOOT-MARKER
# The guest command prints the marker and the guest's uptime (s since its kernel's clock started)
# with shell builtins only, so it is the first thing /init's command does.
cmdline="console=ttyS0 quiet -- read up _ </proc/uptime; echo $marker \$up"
memory=
if [ -n "$mem_delay" ]; then
    cmdline="$cmdline; sleep 3"
    memory="-m $mem_delay"
fi
Q=/share/qemu
status=0

echo "L1: $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPU, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "L1 kvm_amd: nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
echo "qemu: $($Q/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/qemu-system-x86_64 --version | head -n1)"

echo "cmd swiftlet: swiftlet run --kernel vmlinuz --initrd initrd.img --memory 128M --cpus 1 --cmdline '$cmdline'"
echo "cmd qemu: $Q/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/qemu-system-x86_64 -L $Q/share -M $machine -accel kvm -cpu host -m 128M -smp 1 -nodefaults -no-user-config -nographic -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=1 -kernel vmlinuz -initrd initrd.img -append '$cmdline'"

# swiftlet exits with the guest command's status (0); QEMU with (0 << 1) | 1 = 1 through
# isa-debug-exit.
run_swiftlet() {
    ./boottime -t "$timeout" -e 0 $memory "$1" "$marker" -- \
        swiftlet run --kernel vmlinuz --initrd initrd.img --memory 128M --cpus 1 \
        --cmdline "$cmdline" || status=1
}
run_qemu() {
    ./boottime -t "$timeout" -e 1 $memory "$1" "$marker" -- \
        $Q/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/qemu-system-x86_64 -L $Q/share \
        -M "$machine" -accel kvm -cpu host -m 128M -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -device isa-debug-exit,iobase=0xf4,iosize=1 \
        -kernel vmlinuz -initrd initrd.img -append "$cmdline" || status=1
}

i=0
while [ "$i" -lt "$warmup" ]; do
    run_swiftlet swiftlet-warmup
    run_qemu qemu-warmup
    i=$((i + 1))
done
i=0
while [ "$i" -lt "$runs" ]; do
    if [ $((i % 2)) = 0 ]; then
        run_swiftlet swiftlet; run_qemu qemu
    else
        run_qemu qemu; run_swiftlet swiftlet
    fi
    i=$((i + 1))
done
exit "$status"
