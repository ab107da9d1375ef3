#!/usr/bin/env python3
"""A whole microVM from Python with the standard library alone (ctypes): libswiftlet's VM level.

Runs a Solo5 hvt unikernel with a block device from a Firecracker JSON config, reads its console
through the descriptor swiftlet_vm_console gives, and exits with the guest's status.

    python3 run_unikernel.py UNIKERNEL [DISK] [--lib PATH] [--pause]

UNIKERNEL: an hvt unikernel, e.g. blk.hvt from guests/hvt/build.sh (it writes and reads back
the block device "storage"). DISK: its backing file (default: a fresh 64 KiB file beside it).
--lib: libswiftlet.so.1 (default: found by the dynamic linker, e.g. LD_LIBRARY_PATH=PREFIX/lib).
--pause: pause and resume the VM once while it runs, and report the states seen.
"""
import argparse
import ctypes
import json
import os
import sys
import tempfile

ABI_VERSION = 2  # SWIFTLET_ABI_VERSION of the header this was written against (VM level: 2)
STATES = {0: "created", 1: "running", 2: "paused", 3: "stopped", 4: "crashed"}
E_TIMEOUT = -18


class Swiftlet:
    """The few swiftlet_vm_* functions this example uses, declared by hand (no header parsing)."""

    def __init__(self, path):
        lib = ctypes.CDLL(path or "libswiftlet.so.1")
        u64, p_u64 = ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)
        for name, args in [("swiftlet_open", [ctypes.c_uint32]),
                           ("swiftlet_vm_create", [ctypes.c_char_p, ctypes.c_size_t, p_u64]),
                           ("swiftlet_vm_console", [u64, ctypes.POINTER(ctypes.c_int)]),
                           ("swiftlet_vm_start", [u64]), ("swiftlet_vm_pause", [u64]),
                           ("swiftlet_vm_resume", [u64]), ("swiftlet_vm_stop", [u64]),
                           ("swiftlet_vm_state", [u64, ctypes.POINTER(ctypes.c_uint32)]),
                           ("swiftlet_vm_wait", [u64, ctypes.c_int32, ctypes.POINTER(ctypes.c_int)]),
                           ("swiftlet_vm_destroy", [u64])]:
            function = getattr(lib, name)
            function.argtypes, function.restype = args, ctypes.c_int
        lib.swiftlet_last_error.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.swiftlet_last_error.restype = ctypes.c_size_t
        self.lib = lib

    def check(self, status, what):
        if status != 0:
            message = ctypes.create_string_buffer(512)
            self.lib.swiftlet_last_error(message, len(message))
            raise RuntimeError(f"{what}: {message.value.decode(errors='replace')} (status {status})")

    def state(self, vm):
        value = ctypes.c_uint32()
        self.check(self.lib.swiftlet_vm_state(vm, ctypes.byref(value)), "state")
        return STATES.get(value.value, str(value.value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unikernel")
    parser.add_argument("disk", nargs="?")
    parser.add_argument("--lib")
    parser.add_argument("--pause", action="store_true")
    args = parser.parse_args()
    disk = args.disk
    if disk is None:
        handle, disk = tempfile.mkstemp(suffix=".img")
        os.ftruncate(handle, 64 << 10)
        os.close(handle)

    s = Swiftlet(args.lib)
    s.check(s.lib.swiftlet_open(ABI_VERSION), "open")
    config = json.dumps({
        "boot-source": {"kernel_image_path": os.path.abspath(args.unikernel)},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
        "drives": [{"drive_id": "storage", "path_on_host": os.path.abspath(disk),
                    "is_root_device": False, "is_read_only": False}],
    }).encode()
    vm = ctypes.c_uint64()
    s.check(s.lib.swiftlet_vm_create(config, len(config), ctypes.byref(vm)), "create")
    fd = ctypes.c_int(-1)
    s.check(s.lib.swiftlet_vm_console(vm, ctypes.byref(fd)), "console")
    s.check(s.lib.swiftlet_vm_start(vm), "start")
    if args.pause:
        s.check(s.lib.swiftlet_vm_pause(vm), "pause")
        paused = s.state(vm)
        s.check(s.lib.swiftlet_vm_resume(vm), "resume")
        print(f"states: {paused}, then {s.state(vm)}", file=sys.stderr)

    # The console: read until the VM ends and closes its end (which it does when destroyed), so
    # wait for the status first without a limit in a second step.
    output = bytearray()
    status = ctypes.c_int(-1)
    with os.fdopen(fd.value, "rb", buffering=0) as console:
        os.set_blocking(console.fileno(), False)
        while True:
            try:
                chunk = console.read(4096)
            except BlockingIOError:
                chunk = None
            if chunk:
                output += chunk
                continue
            result = s.lib.swiftlet_vm_wait(vm, 50, ctypes.byref(status))
            if result == E_TIMEOUT:
                continue
            s.check(result, "wait")
            # The guest ended: take what it wrote last.
            try:
                output += console.read() or b""
            except BlockingIOError:
                pass
            break
    final = s.state(vm)
    s.check(s.lib.swiftlet_vm_destroy(vm), "destroy")
    sys.stdout.write(output.decode(errors="replace"))
    print(f"VM {final}, exit status {status.value}", file=sys.stderr)
    return status.value


if __name__ == "__main__":
    sys.exit(main())
