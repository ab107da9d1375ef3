"""Shared helpers for Swiftlet's benchmark scripts (python3 stdlib only).

- locating the swiftlet binary (env SWIFTLET, then .build/release/swiftlet, then .build/debug/swiftlet)
- building the C peer tender bench/peer/hvt-mini.c into bench/.cache/ (gcc -O2)
- building the test unikernels with guests/hvt/build.sh into bench/.cache/guests/
  (or using prebuilt ones from env HVT_GUESTS=DIR)
- timing a child process, simple statistics and table printing
"""

import collections
import os
import resource
import signal
import shutil
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
CACHE = os.environ.get("BENCH_CACHE", os.path.join(BENCH_DIR, ".cache"))
PEER_SRC = os.path.join(BENCH_DIR, "peer", "hvt-mini.c")
# Solo5 v0.12.1's own solo5-hvt, where the team's shared folder sits beside the checkout (or
# SOLO5_HVT=PATH): the real peer for hvt ABI 2. Benchmarks may use it; tests must not need it.
SOLO5_HVT = os.environ.get("SOLO5_HVT", os.path.join(os.path.dirname(REPO), "shared", "peers", "solo5-hvt"))
GUEST_DIR = os.path.join(REPO, "guests", "hvt")


class BenchError(Exception):
    """A missing prerequisite or a failed run: printed as 'error: ...', exit status 2."""


def main_wrapper(fn):
    """Run fn() and turn BenchError / Ctrl-C into a clean message and exit status."""
    try:
        sys.exit(fn() or 0)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- prerequisites

def check_kvm():
    if not os.path.exists("/dev/kvm"):
        raise BenchError("/dev/kvm does not exist: these benchmarks need KVM")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise BenchError("no read/write access to /dev/kvm (run as root or join the kvm group)")


def find_swiftlet():
    """Path of the swiftlet binary: $SWIFTLET, else what users get (the README's scripts/demo
    installs into .build/demo-prefix; scripts/install builds in .build/install), else a plain
    release build; warns about a debug build."""
    env = os.environ.get("SWIFTLET")
    if env:
        path = shutil.which(env) or env
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BenchError(f"SWIFTLET={env} is not an executable file")
        return os.path.abspath(path)
    for path in [os.path.join(REPO, ".build", "demo-prefix", "bin", "swiftlet"),
                 os.path.join(REPO, ".build", "install", "release", "swiftlet"),
                 os.path.join(REPO, ".build", "release", "swiftlet")]:
        if os.access(path, os.X_OK):
            log(f"swiftlet: {os.path.relpath(path, REPO)} (set SWIFTLET=PATH for another)")
            return path
    debug = os.path.join(REPO, ".build", "debug", "swiftlet")
    if os.access(debug, os.X_OK):
        log("warning: using the DEBUG build .build/debug/swiftlet; figures are not representative "
            "(scripts/install PREFIX, then SWIFTLET=PREFIX/bin/swiftlet)")
        return debug
    raise BenchError("swiftlet binary not found: scripts/demo or scripts/install first "
                     "(or set SWIFTLET=/path/to/swiftlet)")


def _newer(src, dst):
    return not os.path.exists(dst) or os.path.getmtime(src) > os.path.getmtime(dst)


def build_hvt_mini():
    """Compile bench/peer/hvt-mini.c with gcc -O2 into the cache (only when stale)."""
    env = os.environ.get("HVT_MINI")
    if env:
        return os.path.abspath(env)
    out = os.path.join(CACHE, "hvt-mini")
    if _newer(PEER_SRC, out):
        cc = os.environ.get("CC", "gcc")
        if not shutil.which(cc):
            raise BenchError(f"{cc} not found: install gcc (apt-get install gcc) to build the C peer")
        os.makedirs(CACHE, exist_ok=True)
        tmp = out + ".tmp"
        r = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, PEER_SRC],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise BenchError(f"building hvt-mini failed:\n{r.stdout}")
        os.replace(tmp, out)
        log(f"built {os.path.relpath(out, REPO)}")
    return out


def _latest_mtime(root):
    latest = 0.0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                latest = max(latest, os.path.getmtime(os.path.join(d, f)))
            except OSError:
                pass
    return latest


def guests(*names):
    """Paths of the given hvt guests (e.g. "hello", "idle"), building them when needed."""
    env = os.environ.get("HVT_GUESTS")
    if env:
        outdir = os.path.abspath(env)
    else:
        script = os.path.join(GUEST_DIR, "build.sh")
        if not os.path.exists(script):
            raise BenchError("guests/hvt/build.sh not found: the hvt test unikernels are needed "
                             "(or set HVT_GUESTS=DIR holding hello.hvt, idle.hvt, hcloop.hvt ...)")
        outdir = os.path.join(CACHE, "guests")
        stamp = os.path.join(outdir, ".stamp")
        # GUEST_CC (e.g. "gcc -mgeneral-regs-only") is passed to build.sh as CC.
        guest_cc = os.environ.get("GUEST_CC", "")
        # What the build depends on besides the sources (build.sh reads HVT_SSE and HVT_CFLAGS).
        key = "\n".join([guest_cc, os.environ.get("HVT_SSE", ""), os.environ.get("HVT_CFLAGS", "")])
        try:
            with open(stamp) as f:
                stamp_cc = f.read()
        except OSError:
            stamp_cc = None
        missing = [n for n in names if not os.path.exists(os.path.join(outdir, n + ".hvt"))]
        if (missing or stamp_cc != key
                or _latest_mtime(GUEST_DIR) > os.path.getmtime(stamp)):
            os.makedirs(outdir, exist_ok=True)
            log(f"building guests: {'CC=' + repr(guest_cc) + ' ' if guest_cc else ''}"
                f"guests/hvt/build.sh {os.path.relpath(outdir, REPO)}")
            env = dict(os.environ)
            env.pop("CC", None)
            if guest_cc:
                env["CC"] = guest_cc
            r = subprocess.run(["sh", script, outdir], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise BenchError(f"guests/hvt/build.sh failed (status {r.returncode}):\n{r.stdout}")
            with open(stamp, "w") as f:
                f.write(key)
    paths = {}
    for n in names:
        p = os.path.join(outdir, n + ".hvt")
        if not os.path.isfile(p):
            why = "HVT_GUESTS" if env else "guests/hvt/build.sh did not produce it"
            raise BenchError(f"{p} not found ({why})")
        paths[n] = p
    return paths


# ---------------------------------------------------------------- tenders

class Tender:
    """One tender under test: swiftlet ('swiftlet hvt ...') or the C peer ('hvt-mini ...')."""

    def __init__(self, name, prefix):
        self.name = name
        self.prefix = prefix

    def argv(self, kernel, args=(), mem=None):
        a = list(self.prefix)
        if mem is not None:
            a.append(f"--mem={mem}")
        return a + [kernel] + [str(x) for x in args]


def add_tender_args(parser):
    parser.add_argument("--only", choices=["swiftlet", "c", "solo5-hvt"],
                        help="run only one tender (default: all there are, to get the ratios)")
    parser.add_argument("--peer", choices=["all", "c", "solo5-hvt"], default="all",
                        help="the peers: Solo5 v0.12.1's solo5-hvt (../shared/peers/solo5-hvt or "
                             "SOLO5_HVT=PATH, where present) and our C hvt-mini (default: both)")


def solo5_hvt():
    """Path of the real solo5-hvt (v0.12.1), or a BenchError saying where it was looked for."""
    if os.access(SOLO5_HVT, os.X_OK):
        return SOLO5_HVT
    raise BenchError(f"solo5-hvt not found at {SOLO5_HVT} (set SOLO5_HVT=PATH)")


def warn_if_busy():
    """Warn when the machine is already loaded: timings and MemAvailable will be noisy."""
    try:
        load1 = float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError):
        return
    ncpu = os.cpu_count() or 1
    if load1 > 0.5 * ncpu:
        log(f"warning: load average {load1:.2f} on {ncpu} CPUs before starting: "
            "other work is running, figures will be noisy")


SOLO5_NAME = "solo5-hvt v0.12.1"
C_NAME = "hvt-mini (C)"


def has_solo5_hvt():
    return os.access(SOLO5_HVT, os.X_OK)


def tenders(only=None, peer="all"):
    """[swiftlet, peers...] Tender objects, building/locating what is needed. The peers are Solo5's
    own tender (where ../shared/peers or SOLO5_HVT has it) and hvt-mini (C), or the one `peer`
    names; `only` keeps one of them."""
    check_kvm()
    warn_if_busy()
    out = []
    if only in (None, "swiftlet"):
        out.append(Tender("swiftlet", [find_swiftlet(), "hvt"]))
    want_solo5 = only == "solo5-hvt" or (only is None and (peer == "solo5-hvt" or (peer == "all" and has_solo5_hvt())))
    if want_solo5:
        out.append(Tender(SOLO5_NAME, [solo5_hvt()]))
    elif only is None and peer == "all":
        log(f"solo5-hvt not found at {SOLO5_HVT} (SOLO5_HVT=PATH): comparing with hvt-mini only")
    if only == "c" or (only is None and peer in ("all", "c")):
        out.append(Tender(C_NAME, [build_hvt_mini()]))
    return out


Run = collections.namedtuple("Run", "wall status err out utime stime")


def run_timed(argv, timeout=None, capture=False):
    """Spawn argv and wait for it. Returns Run(wall seconds from spawn to reap, exit status,
    stderr, stdout (captured only with capture=True, else sent to /dev/null), user and system CPU
    seconds of the child (from RUSAGE_CHILDREN deltas; runs must not overlap))."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
    try:
        so, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise BenchError(f"timed out after {timeout} s: {' '.join(argv)}")
    t1 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(t1 - t0, p.returncode, err.decode(errors="replace"),
               (so or b"").decode(errors="replace"),
               ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime)


def expect_ok(argv, run, want=0):
    status, err = run.status, run.err
    if status != want:
        why = f"signal {-status}" if status < 0 else f"status {status}"
        raise BenchError(f"{' '.join(argv)} exited with {why} (expected {want})\n{err.strip()}")


# ---------------------------------------------------------------- statistics / output

def percentile(xs, p):
    """Linear-interpolated percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(xs):
    return percentile(xs, 50)


def table(headers, rows):
    """Print a plain-text table; numbers are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        out = []
        for i, c in enumerate(r):
            out.append(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))


def verdict(value, target, lower_is_better=True):
    ok = value <= target if lower_is_better else value >= target
    return "OK" if ok else "MISSED"


def read_kv(path):
    """Parse 'Key:   value kB' files (/proc/meminfo, smaps_rollup, status) into {key: int or str}."""
    out = {}
    try:
        with open(path) as f:
            for ln in f:
                if ":" not in ln:
                    continue
                k, v = ln.split(":", 1)
                parts = v.split()
                if parts and parts[0].isdigit():
                    out[k.strip()] = int(parts[0])
                elif parts:
                    out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def install_term_handler():
    """Make SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt so that finally-blocks clean up
    (SIGINT too, since a shell starting us in the background may have set it to ignored)."""
    def h(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, h)
    signal.signal(signal.SIGHUP, h)
