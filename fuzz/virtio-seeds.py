#!/usr/bin/env python3
"""Writes the seeds of the virtio fuzz targets (virtqueue, virtio-blk, virtio-net, virtio-vsock,
virtio-rng) into fuzz/corpus/TARGET/: valid queues and requests laid out the way the targets read
their input (see the doc comments of fuzz/Sources/SwiftletFuzz/Virt*Target.swift and
VirtioFuzzSupport.swift). Run it from anywhere: python3 fuzz/virtio-seeds.py"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
NEXT, WRITE, INDIRECT = 1, 2, 4
VERSION_1, EVENT_IDX, INDIRECT_DESC = 1 << 32, 1 << 29, 1 << 28
ALL = (1 << 64) - 1


class Ram:
    """64 KiB of guest RAM; trailing zeros are left off the seed."""

    def __init__(self):
        self.b = bytearray(64 << 10)

    def put(self, address, data):
        self.b[address:address + len(data)] = data

    def u16(self, address, v): self.put(address, struct.pack("<H", v))

    def image(self):
        return bytes(self.b).rstrip(b"\0")


class Queue:
    """The driver side of one split virtqueue whose rings start at `base` (like the unit tests'
    VirtqueueTestDriver): descriptors handed out round robin, chains published in order."""

    def __init__(self, ram, base, size):
        self.ram, self.size, self.desc = ram, size, base
        self.avail = base + 16 * size
        self.used = (self.avail + 6 + 2 * size + 3) & ~3
        self.next_desc, self.avail_idx = 0, 0

    def descriptor(self, table, index, address, length, flags, nxt=0):
        self.ram.put(table + 16 * index, struct.pack("<QIHH", address, length, flags, nxt))

    def post(self, buffers, publish=True):
        """buffers: [(address, length, writable)]; returns the head."""
        head = self.next_desc
        for i, (address, length, writable) in enumerate(buffers):
            index = self.next_desc
            self.next_desc = (self.next_desc + 1) % self.size
            last = i == len(buffers) - 1
            flags = (WRITE if writable else 0) | (0 if last else NEXT)
            self.descriptor(self.desc, index, address, length, flags, 0 if last else self.next_desc)
        self.publish(head, publish)
        return head

    def post_indirect(self, buffers, table, publish=True):
        for i, (address, length, writable) in enumerate(buffers):
            last = i == len(buffers) - 1
            flags = (WRITE if writable else 0) | (0 if last else NEXT)
            self.descriptor(table, i, address, length, flags, 0 if last else i + 1)
        head = self.next_desc
        self.next_desc = (self.next_desc + 1) % self.size
        self.descriptor(self.desc, head, table, 16 * len(buffers), INDIRECT)
        self.publish(head, publish)
        return head

    def publish(self, head, publish):
        self.ram.u16(self.avail + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx += 1
        if publish:
            self.ram.u16(self.avail + 2, self.avail_idx)

    def setup(self, enabled=True):
        """The 15 bytes of FuzzQueueSetup."""
        return struct.pack("<HIIIB", self.size, self.desc, self.avail, self.used, int(enabled))


# Device targets: FuzzEvent kinds.
NOTIFY, STORE16, STORE32, BACKEND, RESET = range(5)


def event(kind, arg=0, a=0, b=0):
    return struct.pack("<BBHI", kind, arg, a, b)


def driver(features, queues, events, raw=False):
    assert len(events) <= 16
    slots = events + [event(NOTIFY)] * (16 - len(events))
    return struct.pack("<QB", features, int(raw)) + b"".join(q.setup() for q in queues) + bytes([len(events)]) + b"".join(slots)


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# MARK: virtio-blk

def blk_header(kind, sector):
    return struct.pack("<IIQ", kind, 0, sector)


def blk_seed(name, read_only=False, event_idx=True, indirect=False):
    ram = Ram()
    q = Queue(ram, 0x0, 32)
    requests = [  # type, sector, readable payload, writable data length
        (0, 1, b"", 512),                        # IN
        (1, 2, bytes(range(256)) * 2, 0),        # OUT
        (4, 0, b"", 0),                          # FLUSH
        (8, 0, b"", 20),                         # GET_ID
        (11, 0, struct.pack("<QII", 1, 2, 0), 0),  # DISCARD
        (13, 3, struct.pack("<QII", 3, 1, 1), 0),  # WRITE_ZEROES with unmap
        (99, 0, b"", 0),                         # unknown
    ]
    low, high = 0x400, 0x8000  # what the driver wrote low (headers, OUT data), buffers high
    for i, (kind, sector, out, data) in enumerate(requests):
        ram.put(low, blk_header(kind, sector) + out)
        buffers = [(low, 16, False)]
        if out:
            buffers.append((low + 16, len(out), False))
        low += 16 + len(out)
        if data:
            buffers.append((high, data, True))
            high += data
        buffers.append((high, 1, True))
        high += 1
        # The last request waits unpublished until the script stores avail.idx.
        last = i == len(requests) - 1
        if indirect and i == 0:
            q.post_indirect(buffers, table=0x380, publish=not last)
        else:
            q.post(buffers, publish=not last)
    features = ALL if event_idx else ALL & ~EVENT_IDX
    events = [event(NOTIFY, 0), event(STORE16, 0, q.avail + 2, q.avail_idx), event(NOTIFY, 0),
              event(RESET), event(NOTIFY, 0)]
    disk = bytes([1, int(read_only), 0, 2])  # 4096 bytes, read-only flag, no failures, serial "fuzz-disk"
    write("virtio-blk", name, disk + driver(features, [q], events) + ram.image())


# MARK: virtio-rng

def rng_seed(name, event_idx):
    ram = Ram()
    q = Queue(ram, 0x0, 8)
    q.post([(0x1000, 64, True)])
    q.post([(0x1100, 16, True), (0x1200, 16, True)])
    q.post([(0x1300, 8, False), (0x1400, 32, True)])
    q.post_indirect([(0x1500, 24, True), (0x1600, 40, True)], table=0xE0)
    q.post([(0x1700, 0, True), (0x1800, 100, True)], publish=False)
    features = ALL if event_idx else ALL & ~EVENT_IDX
    events = [event(NOTIFY, 0), event(STORE16, 0, q.avail + 2, q.avail_idx), event(NOTIFY, 0)]
    write("virtio-rng", name, bytes([0x42, 0]) + driver(features, [q], events) + ram.image())


# MARK: virtio-net

def net_seed(name, mergeable):
    ram = Ram()
    rx, tx = Queue(ram, 0x0, 16), Queue(ram, 0x800, 16)
    size = 2048 if mergeable else 1526
    for i in range(16 if mergeable else 8):  # mergeable: a queue's worth, enough for any frame
        rx.post([(0x8000 + 0x800 * i, size, True)])
    for i, length in enumerate([60, 1514]):
        base = 0x1000 + 0x20 * i
        ram.put(base + 12, bytes([0xFF] * 6 + [0x02, 0, 0, 0, 0, 1, 0x08, 0]))
        tx.post([(base, 12, False), (base + 12, length, False)])
    mrg = 1 << 15
    guest_gso = (1 << 7) | (1 << 8) | (1 << 10)  # without them a jumbo frame's worth of buffers is enough
    features = ALL & ~guest_gso if mergeable else ALL & ~mrg & ~EVENT_IDX
    events = [event(NOTIFY, 1), event(BACKEND, 7, 0, 12 + 60), event(NOTIFY, 0),
              event(BACKEND, 9, 1, 12 + 1514), event(BACKEND, 3, 0, 12 + 9000)]
    write("virtio-net", name, bytes([0, 0]) + driver(features, [rx, tx], events) + ram.image())


# MARK: virtio-vsock

REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = 1, 2, 3, 4, 5, 6, 7


def vsock_header(op, src_port, dst_port, length=0, flags=0, buf_alloc=64 << 10, fwd=0):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, length, 1, op, flags, buf_alloc, fwd)


def vsock_seed(name, event_idx):
    ram = Ram()
    rx, tx, ev = Queue(ram, 0x0, 16), Queue(ram, 0x400, 16), Queue(ram, 0x800, 4)
    for i in range(12):
        rx.post([(0x8000 + 0x400 * i, 0x400, True)])
    port = 52  # host port P: the stream reads 14 bytes each time and takes all writes
    packets = [
        (vsock_header(REQUEST, 1000, port), b""),
        (vsock_header(RW, 1000, port, 100), bytes(range(100))),
        (vsock_header(CREDIT_REQUEST, 1000, port), b""),
        (vsock_header(CREDIT_UPDATE, 1000, port, buf_alloc=128 << 10), b""),
        (vsock_header(SHUTDOWN, 1000, port, flags=3), b""),
        # Answers the host program's request for guest port 1234 (local port 1024): published by
        # the script after the back-end event.
        (vsock_header(RESPONSE, 1234, 1024), b""),
        (vsock_header(RW, 1234, 1024, 5), b"hello"),
    ]
    for i, (header, payload) in enumerate(packets):
        base = 0xA00 + 0x100 * i
        ram.put(base, header)
        buffers = [(base, 44, False)]
        if payload:
            ram.put(base + 0x80, payload)
            buffers.append((base + 0x80, len(payload), False))
        tx.post(buffers, publish=i < 5)
    ev.post([(0xF000, 8, True)])
    features = ALL if event_idx else ALL & ~EVENT_IDX
    events = [event(NOTIFY, 1), event(NOTIFY, 0),
              event(BACKEND, 0, 199 << 2, 1234),     # a host program asks for guest port 1234 (reads 200 bytes)
              event(STORE16, 0, tx.avail + 2, 7), event(NOTIFY, 1),
              event(BACKEND, 1, 1, 0),               # stream 2 (the host program's) is readable
              event(NOTIFY, 0), event(RESET), event(NOTIFY, 1)]
    write("virtio-vsock", name, bytes([0]) + driver(features, [rx, tx, ev], events) + ram.image())


# MARK: virtqueue

(TAKE, WALK, STEP, LENGTHS, COPY_OUT, COPY_IN, ADD_USED, ADD_USED_ANY, DISABLE, ENABLE, NEEDS,
 DRAIN, Q_STORE16, TOGGLE_READY) = range(14)


def op(kind, arg=0, x=0, y=0):
    return struct.pack("<BBHH", kind, arg, x, y)


def virtqueue_seed(name, size_log2, event_idx, build, ops):
    ram = Ram()
    q = Queue(ram, 0x0, 1 << size_log2)
    build(ram, q)
    ops = ops(q)
    flags = int(event_idx)
    assert len(ops) <= 32
    slots = ops + [op(NEEDS)] * (32 - len(ops))
    header = struct.pack("<HBIII", size_log2, flags, q.desc, q.avail, q.used) + bytes([len(ops)]) + b"".join(slots)
    write("virtqueue", name, header + ram.image())


def direct_chains(ram, q):
    ram.put(0x400, bytes(range(150)))
    q.post([(0x400, 100, False), (0x464, 50, False), (0x8000, 200, True)])
    q.post([(0x500, 16, False), (0x8100, 0, True), (0x8200, 64, True)])
    q.post([(0x8300, 64, True)], publish=False)


def indirect_chains(ram, q):
    ram.put(0x300, bytes(range(30)))
    q.post_indirect([(0x300, 30, False), (0x8100, 30, True), (0x8200, 30, True)], table=0x200)
    q.post([(0x7FF0, 16, False), (0x8000, 16, True)])  # ends at the first region's end, then the second's start
    q.post([(0x7FF8, 16, True)])  # straddles the two regions: refused
    q.post_indirect([(0x300, 8, False)], table=0x280)


def common_ops(q):
    """Takes, walks, copies and returns chains; publishes the last chain; drains."""
    return [op(TAKE), op(WALK), op(LENGTHS), op(COPY_OUT, 0, 300, 10), op(COPY_IN, 7, 300, 5),
            op(TAKE), op(STEP, 1, 2), op(STEP, 1, 3), op(ADD_USED, 0, 7), op(NEEDS),
            op(DISABLE), op(Q_STORE16, 0, q.avail + 2, q.avail_idx), op(DRAIN, 0, 4), op(ENABLE), op(ADD_USED_ANY, 0, 99, 1),
            op(TOGGLE_READY), op(TAKE), op(TOGGLE_READY), op(TAKE), op(WALK)]

if __name__ == "__main__":
    blk_seed("requests", event_idx=True)
    blk_seed("requests-indirect", event_idx=False, indirect=True)
    blk_seed("read-only", read_only=True)
    rng_seed("requests", event_idx=False)
    rng_seed("requests-event-idx", event_idx=True)
    net_seed("rx-tx", mergeable=False)
    net_seed("rx-tx-mergeable", mergeable=True)
    vsock_seed("connections", event_idx=True)
    vsock_seed("connections-no-event-idx", event_idx=False)
    virtqueue_seed("direct", 4, False, direct_chains, common_ops)
    virtqueue_seed("indirect-event-idx", 3, True, indirect_chains, common_ops)
