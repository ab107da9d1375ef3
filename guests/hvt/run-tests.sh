#!/bin/bash
# run-tests.sh SWIFTLET OUTDIR - smoke-test a tender against the guests built
# by build.sh (the contract in README.md): the ABI-2 guests, and a few ABI-1
# ones (a tender that runs only ABI 2, like solo5-hvt, fails those). Prints PASS/FAIL per case and
# exits non-zero if any case fails. Set NET=1 (as root, with ip(8) and
# ping(8)) to also run the net guest inside a temporary network namespace.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 SWIFTLET OUTDIR" >&2
    exit 2
fi
T=$1
O=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failed=0

# check NAME WANT_STATUS WANT_REGEX -- tender args...
check() {
    local name=$1 want=$2 re=$3
    shift 4
    timeout 120 "$T" hvt "$@" >"$TMP/out" 2>&1
    local rc=$?
    if [ "$rc" = "$want" ] && grep -Eq -- "$re" "$TMP/out"; then
        echo "PASS $name"
    else
        echo "FAIL $name (exit $rc, want $want; want output /$re/)"
        sed 's/^/    | /' "$TMP/out" | head -20
        failed=1
    fi
}

truncate -s 64K "$TMP/disk.img"
check hello          0   '^arg\[2\]=b$'                 -- "$O/hello.hvt" a b
check hello-info     0   '^tsc_freq_nonzero=1$'         -- "$O/hello.hvt"
check hello-bss      0   '^bss_zero=1$'                 -- "$O/hello.hvt"
check exit-7         7   'exiting with status 7'        -- "$O/exit.hvt" 7
check abort          255 '^about to abort$'             -- "$O/abort.hvt"
check zeropage       255 '^trap: vector 14 .*cr2=0x0 '  -- "$O/zeropage.hvt"
check wnox           255 '^trap: vector 14 '            -- "$O/wnox.hvt"
check xnow           255 '^trap: vector 14 '            -- "$O/xnow.hvt"
check trap-ud2       255 '^trap: vector 6 '             -- "$O/trap.hvt" ud2
check trap-div0      255 '^trap: vector 0 '             -- "$O/trap.hvt" div0
check trap-gp        255 '^trap: vector 13 '            -- "$O/trap.hvt" gp
check trap-pf        255 '^trap: vector 14 .*cr2=0x7ffffffff000' -- "$O/trap.hvt" pf
check sse            0   '^SUCCESS$'                    -- "$O/sse.hvt"
check time           0   '^SUCCESS$'                    -- "$O/time.hvt"
check demo           0   '^Swiftlet demo unikernel: '   -- "$O/demo.hvt"
check hcloop         0   '^hcloop: calls=1000 '         -- "$O/hcloop.hvt" 1000
check blk            0   '^SUCCESS$'                    -- --block:storage="$TMP/disk.img" "$O/blk.hvt"
check blk-4k         0   'block_size=4096'              -- --block:storage="$TMP/disk.img" --block-sector-size:storage=4096 "$O/blk.hvt"
for v in read write straddle wrap; do
    check "blkbad-$v" 1 .                               -- --block:storage="$TMP/disk.img" "$O/blkbad.hvt" $v
done
for v in beyond straddle wrap huge; do
    check "putsbad-$v" 1 .                              -- "$O/putsbad.hvt" $v
done
for v in beyond straddle badnr kick; do
    check "hcbad-$v" 1 .                                -- "$O/hcbad.hvt" $v
done
check tls            0   'tls: .* SUCCESS$'             -- "$O/tls.hvt"
check abi1-hello     0   '^arg\[2\]=b$'                 -- "$O/abi1/hello.hvt" a b
check abi1-exit-7    7   'exiting with status 7'        -- "$O/abi1/exit.hvt" 7
args=()
for i in $(seq 0 62); do
    truncate -s 4K "$TMP/b$i.img"
    args+=(--block:b$i="$TMP/b$i.img")
done
check blk63          0   '^SUCCESS$'                    -- "${args[@]}" "$O/blk63.hvt"

if [ "${NET:-0}" = 1 ]; then
    ns=swtest$$
    ip netns add $ns
    ip netns exec $ns ip tuntap add tap0 mode tap
    ip netns exec $ns ip addr add 10.99.0.1/24 dev tap0
    ip netns exec $ns ip link set tap0 up
    ip netns exec $ns timeout 60 "$T" hvt --net:service=tap0 "$O/net.hvt" >"$TMP/net" 2>&1 &
    pid=$!
    for _ in $(seq 50); do grep -q 'net: ready' "$TMP/net" && break; sleep 0.1; done
    ip netns exec $ns ping -c 3 -i 0.3 -W 2 10.99.0.2 >/dev/null
    wait $pid
    rc=$?
    ip netns del $ns
    if [ $rc = 0 ] && grep -q '^SUCCESS$' "$TMP/net"; then
        echo "PASS net"
    else
        echo "FAIL net (exit $rc)"
        sed 's/^/    | /' "$TMP/net" | head -20
        failed=1
    fi
fi
exit $failed
