#!/usr/bin/env python3
"""The "increment" device as a Swiftlet extension, in Python with plain sockets (no FFI).

Started by `swiftlet run --extension examples/extensions/increment.py`: the VMM passes the
protocol socket as descriptor 3 (SWIFTLET_EXTENSION_FD). Or started by hand with
SWIFTLET_EXTENSION_SOCKET=PATH for a VMM run with `--extension listen=PATH`. The device (guests/pvh/ext.c drives it):
  - ports 0x520-0x527 and MMIO 0xF000_0000-0xF000_0FFF: a write stores a value, a read at offset
    0 returns the value stored + 1;
  - port 0x524: a write of a guest-physical address makes the device read 8 bytes there and write
    them back each plus 1, through the VMM's checked memory requests.
The protocol (docs/abi.md, "Extensions"): 48-byte little-endian messages, data after them.
"""
import os
import socket
import struct
import sys

HEADER = struct.Struct("<IHHQQQIIIi")  # size, type, reserved, id, address, value, width, space, is_write, status
HELLO, WELCOME, REGISTER, READY, REPLY, ACCESS, ACCESS_DONE, MEM_READ, MEM_WRITE, MEM_DATA, IRQ = range(1, 12)
PORT, MMIO = 0, 1


class Channel:
    def __init__(self, sock):
        self.sock = sock
        self.next_id = 1

    def send(self, kind, id=0, address=0, value=0, width=0, space=0, is_write=0, status=0, data=b""):
        self.sock.sendall(HEADER.pack(HEADER.size + len(data), kind, 0, id, address, value, width, space, is_write, status) + data)

    def receive(self):
        header = self._exactly(HEADER.size)
        size, kind, _, id, address, value, width, space, is_write, status = HEADER.unpack(header)
        return kind, id, address, value, width, space, is_write, status, self._exactly(size - HEADER.size)

    def _exactly(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                sys.exit(0)  # the VMM ended
            out += chunk
        return out

    def request(self, kind, **fields):
        """A request that gets an answer (register, ready, a memory request): its answer."""
        id = self.next_id
        self.next_id += 1
        self.send(kind, id=id, **fields)
        answer = self.receive()
        if answer[1] != id:
            raise SystemExit(f"increment: answer to {answer[1]}, expected {id}")
        return answer


def main():
    # Started by the VMM: its descriptor. Else the socket of `--extension listen=PATH`.
    path = os.environ.get("SWIFTLET_EXTENSION_SOCKET")
    if path and "SWIFTLET_EXTENSION_FD" not in os.environ:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    else:
        sock = socket.socket(fileno=int(os.environ.get("SWIFTLET_EXTENSION_FD", "3")))
    c = Channel(sock)
    c.send(HELLO, value=1, data=b"increment.py")
    kind, *_, status, _ = c.receive()
    if kind != WELCOME or status != 0:
        raise SystemExit(f"increment: not welcome ({kind}, {status})")
    for space, base, length in [(PORT, 0x520, 8), (MMIO, 0xF000_0000, 0x1000)]:
        if c.request(REGISTER, space=space, address=base, value=length)[7] != 0:
            raise SystemExit(f"increment: range {base:#x} refused")
    c.request(READY)
    stored = {PORT: 0, MMIO: 0}
    while True:
        kind, id, address, value, width, space, is_write, status, data = c.receive()
        if kind != ACCESS:
            raise SystemExit(f"increment: unexpected message {kind}")
        answer = 0
        if space == PORT and address == 0x524 and is_write:
            _, _, _, _, _, _, _, status, got = c.request(MEM_READ, address=value, width=8)
            if status == 0:
                c.request(MEM_WRITE, address=value, data=bytes((b + 1) & 0xFF for b in got))
        elif is_write:
            stored[space] = value
        else:
            answer = (stored[space] + 1) & ((1 << (8 * width)) - 1)
        c.send(ACCESS_DONE, id=id, value=answer)


if __name__ == "__main__":
    main()
