#!/usr/bin/env python3
"""An extension that misbehaves on purpose, one way per run (Tests/IntegrationTests/ExtensionTests):
  exit      exits before saying hello
  silent    never says hello (the VMM's set-up deadline)
  version   says hello with protocol version 99
  overlap   claims COM1's ports (0x3F8), which the VMM's serial port has
  ram       claims MMIO inside guest RAM
  garbage   answers the first access with bytes that are no message
  stall     never answers the first access (the VMM's access deadline)
  network   opens an AF_INET socket first (the extension's seccomp filter kills it)
  memory    on the 0x524 write asks to read memory outside RAM, then to write 5000 bytes; reports the answers
Otherwise it is the increment device (examples/extensions/increment.py): ports 0x520-0x527, MMIO 0xF0000000."""
import os
import socket
import struct
import sys
import time

HEADER = struct.Struct("<IHHQQQIIIi")
HELLO, WELCOME, REGISTER, READY, REPLY, ACCESS, ACCESS_DONE, MEM_READ, MEM_WRITE, MEM_DATA, IRQ = range(1, 12)
mode = sys.argv[1]
sock = socket.socket(fileno=int(os.environ["SWIFTLET_EXTENSION_FD"]))


def send(kind, id=0, address=0, value=0, width=0, space=0, data=b""):
    sock.sendall(HEADER.pack(HEADER.size + len(data), kind, 0, id, address, value, width, space, 0, 0) + data)


def receive():
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                sys.exit(0)
            out += chunk
        return out
    fields = HEADER.unpack(exactly(HEADER.size))
    return fields[1:] + (exactly(fields[0] - HEADER.size),)


if mode == "exit":
    sys.exit(3)
if mode == "network":
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("misbehave: an AF_INET socket was allowed", file=sys.stderr, flush=True)
if mode == "silent":
    time.sleep(60)
send(HELLO, value=99 if mode == "version" else 1, data=b"misbehave")
receive()
claims = {"overlap": [(0, 0x3F8, 8)], "ram": [(1, 0x100000, 0x1000)]}.get(mode, [(0, 0x520, 8), (1, 0xF000_0000, 0x1000)])
for number, (space, base, length) in enumerate(claims, 1):
    send(REGISTER, id=number, address=base, value=length, space=space)
    receive()
send(READY, id=100)
receive()
stored = 0
while True:
    kind, _, id, address, value, width, space, is_write, status, data = receive()
    if mode == "garbage":
        sock.sendall(b"\xff" * 64)
        time.sleep(60)
    if mode == "stall":
        time.sleep(60)
    answer = 0
    if address == 0x524 and is_write and mode == "memory":
        send(MEM_READ, id=200, address=0xFFFF_0000_0000, width=8)
        got = receive()
        send(MEM_WRITE, id=201, address=value, data=b"\x00" * 5000)
        print(f"misbehave: read outside RAM: status {got[8]}", file=sys.stderr, flush=True)
        time.sleep(60)
    elif is_write:
        stored = value
    else:
        answer = stored + 1
    send(ACCESS_DONE, id=id, value=answer)
