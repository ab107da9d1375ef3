#!/bin/sh
# l1-run.sh RUNTIME DATA_MB MEM ORDER — bench/linux-io's runs, inside the L1 VM of scripts/nested-kvm
# (busybox sh, in /share). For each VMM in ORDER (default swiftlet,qemu), one at a time: make a
# tap (tun.ko from the guest kernel's package, busybox tunctl; L1 side 10.0.3.1/24), boot the
# guest (vmlinuz, initrd.img) with root.img (vda, read-only) and data.img (vdb, DATA_MB MiB, made
# here with dd), 1 vCPU / MEM, and run the guest command: fio on /dev/vdb (seq write 1M, seq read
# 1M, rand read 4k qd32), then iperf3 to an iperf3 -s in L1 (guest->L1, then -R L1->guest).
# Prints `L1:`/`qemu:`/`cmd NAME:` info lines, the VMM's whole output prefixed with `NAME| `, and
# `RESULT NAME STATUS SECONDS`. Exit status: 0 when every VMM exited as expected, 1 otherwise.
rt=${1:-5} data_mb=${2:-256} mem=${3:-512M} order=${4:-swiftlet,qemu}
vmm_timeout=$((120 + rt * 30))  # seconds; a VMM still running then is killed (status 137)
Q=/share/qemu
T=/share/tools
status=0

echo "L1: $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPU, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
echo "L1 kvm_amd: nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
echo "qemu: $($Q/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/qemu-system-x86_64 --version | head -n1)"

insmod /share/tun.ko 2>/dev/null
[ -c /dev/net/tun ] || { echo "L1: no /dev/net/tun after insmod tun.ko"; exit 1; }
ip link set lo up
$T/ld-linux-x86-64.so.2 --library-path $T/lib $T/iperf3 -s >/tmp/iperf3-server.log 2>&1 &
iperf_pid=$!

dd if=/dev/zero of=data.img bs=1M count="$data_mb" 2>/dev/null || { echo "L1: cannot make data.img"; exit 1; }

# The guest script, run chrooted in root.img by the guest's /init (`sh /dev/vdc`: the script is a
# third, read-only disk padded to whole sectors with blank lines; the kernel command line allows
# only 32 words after ` -- `).
cat >guest.sh <<GUEST
mount -t tmpfs tmpfs /tmp
ip addr add 10.0.3.2/24 dev eth0
ip link set eth0 up
f() { echo FIO \$1 \$(fio --name=\$1 --filename=/dev/vdb --rw=\$1 --bs=\$2 --iodepth=\$3 --ioengine=libaio --direct=1 --runtime=$rt --time_based --minimal 2>&1); }
p() { iperf3 -c 10.0.3.1 -t $rt -f m \$2 2>&1 | grep -e sender -e receiver -e error | sed "s/^/IPERF_\$1:/"; }
f write 1M 8
f read 1M 8
f randread 4k 32
p up
p down -R
exit 0
GUEST
n=$(wc -c <guest.sh); pad=$(( (512 - n % 512) % 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >>guest.sh
sed -n '/^exit 0$/q; s/^/guest.sh: /p' guest.sh
cmdline="console=ttyS0 quiet panic=-1 root=/dev/vda ro -- sh /dev/vdc"

SW="swiftlet run --kernel vmlinuz --initrd initrd.img --memory $mem --cpus 1 --disk root.img,readonly --disk data.img --disk guest.sh,readonly --net tap=tap0 --cmdline"
QM="$Q/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/qemu-system-x86_64 -L $Q/share -M q35 -accel kvm -cpu host -m $mem -smp 1 -nodefaults -no-user-config -nographic -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=1 -drive file=root.img,if=none,id=r,format=raw,readonly=on -device virtio-blk-pci,drive=r -drive file=data.img,if=none,id=d,format=raw,aio=threads,cache=writeback -device virtio-blk-pci,drive=d -drive file=guest.sh,if=none,id=g,format=raw,readonly=on -device virtio-blk-pci,drive=g -netdev tap,id=n,ifname=tapq,script=no,downscript=no -device virtio-net-pci,netdev=n,romfile= -kernel vmlinuz -initrd initrd.img -append"
echo "cmd swiftlet: $SW '$cmdline'"
echo "cmd qemu: $QM '$cmdline'"

now() { read -r up _ </proc/uptime; echo "$up"; }

run_one() {  # NAME TAP 'EXPECTED_STATUS...'
    tunctl -t "$2" >/dev/null || { echo "RESULT $1 tunctl-failed 0"; status=1; return; }
    ip addr add 10.0.3.1/24 dev "$2"
    ip link set "$2" up
    rm -f /tmp/fifo.$1; mkfifo /tmp/fifo.$1
    sed "s/^/$1| /" </tmp/fifo.$1 &
    sedpid=$!
    t0=$(now)
    if [ "$1" = swiftlet ]; then
        timeout -s KILL "$vmm_timeout" $SW "$cmdline" >/tmp/fifo.$1 2>&1
    else
        timeout -s KILL "$vmm_timeout" $QM "$cmdline" >/tmp/fifo.$1 2>&1
    fi
    rc=$?
    t1=$(now)
    wait "$sedpid"
    echo "tap $2: rx_packets $(cat /sys/class/net/$2/statistics/rx_packets) tx_packets $(cat /sys/class/net/$2/statistics/tx_packets) rx_dropped $(cat /sys/class/net/$2/statistics/rx_dropped) tx_dropped $(cat /sys/class/net/$2/statistics/tx_dropped)"
    ip link set "$2" down
    tunctl -d "$2" >/dev/null
    echo "RESULT $1 $rc $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    case " $3 " in *" $rc "*) ;; *) status=1 ;; esac
}

for v in $(echo "$order" | tr , ' '); do
    case $v in
        swiftlet) run_one swiftlet tap0 0 ;;   # swiftlet exits with the guest command's status
        qemu) run_one qemu tapq '0 1' ;;       # (0 << 1) | 1 through isa-debug-exit; 0 after poweroff -f
    esac
done
kill "$iperf_pid" 2>/dev/null
exit "$status"
