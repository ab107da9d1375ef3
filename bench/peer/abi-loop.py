#!/usr/bin/env python3
"""abi-loop.py: abi-loop.c's libswiftlet side from Python (ctypes, standard library only): the
same long-mode guest (N `out %al, $0x80`, then HLT), each exit served by swiftlet_assist_io with a
Python callback. Prints the line bench/abi-roundtrip reads:
    abi-loop python exits=N wall_ns=W user_ns=U sys_ns=S
Usage: abi-loop.py LIBRARY N"""
import ctypes as C
import mmap
import resource
import struct
import sys
import time

RAM_SIZE, CODE = 2 << 20, 0x8000
EXIT_IO, EXIT_HALT = 1, 3


class Segment(C.Structure):
    _fields_ = [("base", C.c_uint64), ("limit", C.c_uint32), ("selector", C.c_uint16)] + \
               [(n, C.c_uint8) for n in ("type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable", "reserved")]


class DTable(C.Structure):
    _fields_ = [("base", C.c_uint64), ("limit", C.c_uint16), ("reserved", C.c_uint16 * 3)]


class SRegs(C.Structure):
    _fields_ = [("size", C.c_uint32), ("reserved", C.c_uint32)] + \
               [(n, Segment) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")] + \
               [("gdt", DTable), ("idt", DTable)] + [(n, C.c_uint64) for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]


class Regs(C.Structure):
    _fields_ = [("size", C.c_uint32), ("reserved", C.c_uint32)] + [(n, C.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class Exit(C.Structure):
    _fields_ = [("size", C.c_uint32), ("reason", C.c_uint32), ("u", C.c_uint64 * 32)]


class IOAccess(C.Structure):
    _fields_ = [("port", C.c_uint16), ("width", C.c_uint8), ("is_write", C.c_uint8), ("data", C.c_uint8 * 4)]


IOCallback = C.CFUNCTYPE(None, C.c_void_p, C.POINTER(IOAccess))


def main():
    lib, n = C.CDLL(sys.argv[1]), int(sys.argv[2])

    def check(status, what):
        if status != 0:
            message = C.create_string_buffer(512)
            lib.swiftlet_last_error(message, 512)
            raise SystemExit(f"abi-loop.py: {what}: {message.value.decode()}")

    ram = mmap.mmap(-1, RAM_SIZE)
    struct.pack_into("<QQ", ram, 0x1000, 0x2000 | 3, 0)
    struct.pack_into("<Q", ram, 0x2000, 0x3000 | 3)
    for i in range(512):
        struct.pack_into("<Q", ram, 0x3000 + 8 * i, (i << 21) | 0x83)
    ram[CODE:CODE + 12] = bytes([0xB9]) + struct.pack("<I", n) + bytes([0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xF4])
    address = C.addressof(C.c_char.from_buffer(ram))
    check(lib.swiftlet_open(1), "open")
    machine, vcpu = C.c_uint64(), C.c_uint64()
    check(lib.swiftlet_machine_create(0, C.byref(machine)), "machine")
    check(lib.swiftlet_machine_map(machine, C.c_uint64(0), C.c_void_p(address), C.c_uint64(RAM_SIZE), 0), "map")
    check(lib.swiftlet_vcpu_create(machine, 0, C.byref(vcpu)), "vcpu")
    s = SRegs(size=C.sizeof(SRegs))
    check(lib.swiftlet_vcpu_get_sregs(vcpu, C.byref(s)), "sregs")
    code = Segment(limit=0xFFFFFFFF, selector=8, type=11, present=1, s=1, l=1, g=1)
    data = Segment(limit=0xFFFFFFFF, selector=0x10, type=3, present=1, s=1, db=1, g=1)
    s.cs, s.ds, s.es, s.fs, s.gs, s.ss = code, data, data, data, data, data
    s.cr3, s.cr4, s.cr0, s.efer = 0x1000, 1 << 5, 0x80000011, 0x500
    check(lib.swiftlet_vcpu_set_sregs(vcpu, C.byref(s)), "set sregs")
    check(lib.swiftlet_vcpu_set_regs(vcpu, C.byref(Regs(size=C.sizeof(Regs), rip=CODE, rflags=2, rsp=CODE))), "set regs")
    total = [0]

    def on_port(context, access):
        total[0] += access.contents.data[0]

    callback = IOCallback(on_port)
    e = Exit(size=C.sizeof(Exit))
    exits = 0
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter_ns()
    run, assist = lib.swiftlet_vcpu_run, lib.swiftlet_assist_io
    ref = C.byref(e)
    while True:
        check(run(vcpu, ref), "run")
        if e.reason == EXIT_IO:
            check(assist(vcpu, ref, callback, None), "assist")
            exits += 1
            continue
        if e.reason == EXIT_HALT:
            break
        raise SystemExit(f"abi-loop.py: exit {e.reason}")
    t1, r1 = time.perf_counter_ns(), resource.getrusage(resource.RUSAGE_SELF)
    print(f"abi-loop python exits={exits} wall_ns={t1 - t0} user_ns={int((r1.ru_utime - r0.ru_utime) * 1e9)} "
          f"sys_ns={int((r1.ru_stime - r0.ru_stime) * 1e9)}")


if __name__ == "__main__":
    main()
