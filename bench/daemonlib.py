"""Shared pieces of the benches that drive swiftletd (daemon-rate, soak): its API over a Unix
socket, finding the binary, starting it, and the /proc figures of a process."""

import ctypes
import http.client
import os
import signal
import socket
import subprocess
import time

import benchlib as B

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (the daemon's API)."""

    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def call(sock, method, path, body=None):
    c = UnixHTTPConnection(sock)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def find_swiftletd(swiftlet):
    env = os.environ.get("SWIFTLETD")
    path = env or os.path.join(os.path.dirname(swiftlet), "swiftletd")
    if not os.access(path, os.X_OK):
        raise B.BenchError(f"{path} not found: build it (swift build -c release) or set SWIFTLETD=PATH")
    return path


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def vm_pids(state_dir):
    pids = set()
    try:
        names = os.listdir(state_dir)
    except OSError:
        return pids
    for n in names:
        if n.endswith(".pid"):
            try:
                with open(os.path.join(state_dir, n)) as f:
                    pids.add(int(f.read().strip()))
            except (OSError, ValueError):
                pass
    return pids


def is_our_vm(pid, state_dir):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return state_dir.encode() in f.read()
    except OSError:
        return False


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def thread_count(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("Threads:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def start_daemon(swiftletd, swiftlet, config, sock, state, log_path):
    """Starts swiftletd (killed with its parent) and waits until its API answers."""
    log = open(log_path, "w")
    daemon = subprocess.Popen([swiftletd, "--config", config, "--socket", sock, "--state-dir", state,
                               "--swiftlet", swiftlet, "--log-level", "warning"],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                              preexec_fn=lambda: _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
    deadline = time.time() + 20
    while True:
        try:
            if call(sock, "GET", "/")[0] == 200:
                return daemon
        except OSError:
            pass
        if daemon.poll() is not None or time.time() > deadline:
            raise B.BenchError(f"swiftletd did not come up:\n{open(log_path).read()}")
        time.sleep(0.02)
