// CHost: C shims for host OS interfaces Swift cannot reach directly (variadic ioctl/fcntl, macros).
// Used by the Host target only; no KVM here.
#ifndef CHOST_H
#define CHOST_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

// Opens /dev/net/tun and attaches to (or creates, with CAP_NET_ADMIN) tap interface `name`,
// without packet-info headers, non-blocking. Returns the fd or -errno. (In CHost.c: <linux/if.h>
// clashes with glibc's <net/if.h> that Swift's Glibc module already brings in.)
int chost_tap_open(const char *name);

// Opens tap `name` for a virtio-net backend (VIRTIO 1.2 5.1.6): IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
// non-blocking, close-on-exec, with TUNSETVNETHDRSZ = `vnet_header_size` so every frame read or
// written carries that many header bytes first. With `create`, IFF_TUN_EXCL makes TUNSETIFF fail
// (EBUSY) rather than attach to an interface that appeared meanwhile, and TUNSETPERSIST 0 makes
// sure the new interface goes away when the fd closes. Returns the fd or -errno.
int chost_tap_open_vnet(const char *name, int create, int vnet_header_size);
// TUNGETIFF on an already-open descriptor (one passed in by an orchestrator): the interface's name
// (16 bytes, NUL-terminated) and flags. 0 for a tap without packet-information headers; -EPROTOTYPE
// for a tun; -EPFNOSUPPORT for a tap with IFF_NO_PI unset; -EPROTONOSUPPORT for one with
// IFF_VNET_HDR set (every frame would carry a virtio-net header); -errno otherwise (EBADF for a closed
// fd, EBADFD/EINVAL/ENOTTY for a descriptor that is not a tun/tap at all).
int chost_tap_query(int fd, char name[16], int *flags);
// SIOCGIFMTU: the MTU of interface `name`, or -errno.
int chost_if_mtu(const char *name);
// TUNSETOFFLOAD: which offloads (TUN_F_*) the reader of this tap accepts. 0 or -errno.
int chost_tap_set_offload(int fd, unsigned int flags);

// Memory shared with a guest that another thread or CPU writes concurrently (a ring's indices):
// loads and stores the compiler may neither cache nor reorder across, and the full barrier a
// "store mine, then load theirs" handshake needs (x86: mfence; TSO lets a later load pass an
// earlier store).
static inline uint32_t chost_shared_load_u32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
static inline void chost_shared_store_u32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
static inline void chost_full_barrier(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void chost_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}
// fallocate(2), ptrace(PTRACE_TRACEME), pidfd_open(2), pidfd_send_signal(2) and glibc's
// posix_spawn_file_actions_addclosefrom_np (`actions` is a posix_spawn_file_actions_t *):
// 0 (or the new fd) or -errno.
int chost_fallocate(int fd, int mode, int64_t offset, int64_t length);
long chost_ptrace_traceme(void);
int chost_pidfd_open(int pid);
int chost_pidfd_send_signal(int pidfd, int signal);
int chost_spawn_close_from(void *actions, int lowest);
// Starts `path` confined, for an extension process: stdin /dev/null, `channel` as descriptor 3 and
// no descriptor above it, an empty signal mask and default dispositions, then (when >= 0) the
// group and user `gid`/`uid` with no supplementary groups, no_new_privs and the seccomp `filter`
// (`count` instructions; 0: none), then execve. Returns the pid, or -1 with *error the errno of
// the step that failed (in the child too: vfork lets it report).
struct sock_filter;
pid_t chost_spawn_confined(const char *path, char *const argv[], char *const envp[], int channel,
                           const struct sock_filter *filter, unsigned short count, int uid, int gid, int *error);

// poll(2) for input on two descriptors; -1 waits forever. Bit 0: `a` readable, bit 1: `b`; 0 on
// timeout or EINTR.
int chost_poll2(int a, int b, int timeout_ms);

static inline long chost_getrandom(void *buf, unsigned long n) { return getrandom(buf, n, 0); }

static inline int chost_set_blocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ? -errno : 0;
}

static inline int chost_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

static inline int chost_open(const char *path, int flags) { return open(path, flags | O_CLOEXEC, 0644); }
// open(2) with an explicit creation mode (0600 for logs and metrics a user may not share).
static inline int chost_open_mode(const char *path, int flags, unsigned int mode) { return open(path, flags | O_CLOEXEC, mode); }
// PR_SET_NAME: the calling thread's name (15 characters and a NUL at most).
static inline int chost_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

// epoll and timerfd through plain integers: struct epoll_event is packed on x86-64, which Swift
// imports poorly, and the TFD_/EPOLL_ constants are macros.
static inline int chost_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }
// epoll_ctl with `events` and a 64-bit token (struct epoll_event is packed on x86-64). 0 or -errno.
static inline int chost_epoll_control(int ep, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = events;
    e.data.u64 = token;
    return epoll_ctl(ep, op, fd, &e) == 0 ? 0 : -errno;
}
static inline int chost_epoll_add_input(int ep, int fd, uint64_t token) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = token };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}
// Waits and stores the tokens of ready descriptors in `tokens`; returns the count or -errno.
// epoll_pwait: `mask` (NULL: the thread's own) is the signal mask during the wait only.
static inline int chost_epoll_pwait_tokens(int ep, uint64_t *tokens, int max, int timeout_ms, const sigset_t *mask) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_pwait(ep, evs, max, timeout_ms, mask);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) tokens[i] = evs[i].data.u64;
    return n;
}
static inline int chost_epoll_wait_tokens(int ep, uint64_t *tokens, int max, int timeout_ms) {
    return chost_epoll_pwait_tokens(ep, tokens, max, timeout_ms, NULL);
}
// Blocks `sig` in the calling thread; `old` receives the mask before, `during` that mask with
// `sig` unblocked (for epoll_pwait). Undo with chost_restore_signal_mask(old).
static inline void chost_block_signal(int sig, sigset_t *old, sigset_t *during) {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, old);
    *during = *old;
    sigdelset(during, sig);
}
static inline void chost_restore_signal_mask(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }
// Turns input events of `fd` in `ep` on or off (EPOLL_CTL_MOD; off leaves it registered but never
// reported, so a level-triggered fd with unread data stops waking the waiter).
static inline int chost_epoll_set_input(int ep, int fd, uint64_t token, int enabled) {
    struct epoll_event ev = { .events = enabled ? EPOLLIN : 0, .data.u64 = token };
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}
static inline int chost_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK); }
// Arms the timer to fire once after `ns` nanoseconds; 0 disarms it.
static inline int chost_timerfd_arm(int fd, uint64_t ns) {
    struct itimerspec spec = {0};
    spec.it_value.tv_sec = (time_t)(ns / 1000000000ull);
    spec.it_value.tv_nsec = (long)(ns % 1000000000ull);
    return timerfd_settime(fd, 0, &spec, NULL);
}

// eventfd: created close-on-exec and non-blocking; counter reads/writes as whole 8-byte values.
// They return the new fd (create) or 0 (add/take) on success, -errno on failure; EINTR is retried.
static inline int chost_eventfd_create(unsigned int initval, int semaphore) {
    int fd = eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK | (semaphore ? EFD_SEMAPHORE : 0));
    return fd < 0 ? -errno : fd;
}
static inline int chost_eventfd_add(int fd, uint64_t value) {
    for (;;) {
        ssize_t n = write(fd, &value, sizeof value);
        if (n == (ssize_t)sizeof value) return 0;
        if (n >= 0) return -EIO;
        if (errno != EINTR) return -errno;
    }
}
static inline int chost_eventfd_take(int fd, uint64_t *value) {
    for (;;) {
        ssize_t n = read(fd, value, sizeof *value);
        if (n == (ssize_t)sizeof *value) return 0;
        if (n >= 0) return -EIO;
        if (errno != EINTR) return -errno;
    }
}

// MARK: - Sandbox (seccomp-BPF filter and privilege drop; used by Host/Sandbox.swift)
// The kernel constants a filter needs, as functions: Swift cannot import these macros reliably.

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

static inline uint32_t chost_AUDIT_ARCH_X86_64(void) { return AUDIT_ARCH_X86_64; }
// x32 system calls are x86-64 numbers with this bit set; a filter keyed on x86-64 numbers must
// refuse them or they would slip past it.
static inline uint32_t chost_X32_SYSCALL_BIT(void) { return 0x40000000u; }

static inline uint32_t chost_SECCOMP_RET_KILL_PROCESS(void) { return SECCOMP_RET_KILL_PROCESS; }
static inline uint32_t chost_SECCOMP_RET_TRAP(void) { return SECCOMP_RET_TRAP; }
static inline uint32_t chost_SECCOMP_RET_ERRNO(void) { return SECCOMP_RET_ERRNO; }
static inline uint32_t chost_SECCOMP_RET_LOG(void) { return SECCOMP_RET_LOG; }
static inline uint32_t chost_SECCOMP_RET_ALLOW(void) { return SECCOMP_RET_ALLOW; }
static inline uint32_t chost_SECCOMP_RET_DATA(void) { return SECCOMP_RET_DATA; }

// Classic BPF opcodes a seccomp filter uses (A is the accumulator, K the immediate).
static inline uint16_t chost_BPF_LD_W_ABS(void) { return BPF_LD | BPF_W | BPF_ABS; }   // A = data[K]
static inline uint16_t chost_BPF_ALU_AND_K(void) { return BPF_ALU | BPF_AND | BPF_K; } // A &= K
static inline uint16_t chost_BPF_JMP_JEQ_K(void) { return BPF_JMP | BPF_JEQ | BPF_K; } // A == K ? jt : jf
static inline uint16_t chost_BPF_JMP_JGE_K(void) { return BPF_JMP | BPF_JGE | BPF_K; } // A >= K ? jt : jf
static inline uint16_t chost_BPF_RET_K(void) { return BPF_RET | BPF_K; }               // return K
static inline uint16_t chost_BPF_MAXINSNS(void) { return BPF_MAXINSNS; }

// Offsets in struct seccomp_data: the 64-bit arguments are little-endian on x86-64, so the low
// half of args[i] is at args_offset + 8 i and the high half 4 bytes later.
static inline uint32_t chost_seccomp_data_nr_offset(void) { return offsetof(struct seccomp_data, nr); }
static inline uint32_t chost_seccomp_data_arch_offset(void) { return offsetof(struct seccomp_data, arch); }
static inline uint32_t chost_seccomp_data_args_offset(void) { return offsetof(struct seccomp_data, args); }

// Argument values the VMM policy tests.
static inline uint32_t chost_CLONE_THREAD(void) { return 0x00010000u; } // <linux/sched.h>, which clashes with glibc's
// The namespace flags of clone, from <linux/sched.h>.
static inline uint32_t chost_CLONE_NEWNS(void) { return 0x00020000u; }
static inline uint32_t chost_CLONE_NEWCGROUP(void) { return 0x02000000u; }
static inline uint32_t chost_CLONE_NEWUTS(void) { return 0x04000000u; }
static inline uint32_t chost_CLONE_NEWIPC(void) { return 0x08000000u; }
static inline uint32_t chost_CLONE_NEWUSER(void) { return 0x10000000u; }
static inline uint32_t chost_CLONE_NEWPID(void) { return 0x20000000u; }
static inline uint32_t chost_CLONE_NEWNET(void) { return 0x40000000u; }
static inline uint32_t chost_PR_SET_NAME(void) { return PR_SET_NAME; }
static inline uint32_t chost_PR_GET_NAME(void) { return PR_GET_NAME; }
static inline uint32_t chost_PR_SET_VMA(void) { return 0x53564d41u; } // Linux 5.17; newer glibc names mappings with it
static inline uint32_t chost_TIOCSTI(void) { return TIOCSTI; }
static inline uint32_t chost_TIOCLINUX(void) { return TIOCLINUX; }
static inline uint32_t chost_TIOCCONS(void) { return TIOCCONS; }
static inline uint32_t chost_TIOCSETD(void) { return TIOCSETD; }
uint32_t chost_TUNSETOFFLOAD(void); // in CHost.c, beside <linux/if_tun.h>

// The x86-64 system call table (<asm/unistd_64.h>): entry `index` of `chost_syscall_count()`,
// so filters can name system calls (x86-64 builds only; elsewhere the table is a placeholder).
unsigned chost_syscall_count(void);
const char *chost_syscall_name(unsigned index);
int chost_syscall_number(unsigned index);

// setresuid/setresgid (glibc declares them only under _GNU_SOURCE). glibc applies them to every
// thread of the process (it signals each thread to make the same call), as POSIX requires.
// 0 or -errno.
int chost_setresuid(uint32_t uid);
int chost_setresgid(uint32_t gid);
int chost_getresuid(uint32_t *real, uint32_t *effective, uint32_t *saved);
int chost_getresgid(uint32_t *real, uint32_t *effective, uint32_t *saved);

// Sets PR_SET_NO_NEW_PRIVS (so no later execve can gain privileges, and an unprivileged process
// may install a filter) and installs `filter` on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC). Returns 0, -errno, or, when a thread could not take the filter
// (it already has a filter that is not an ancestor of ours), that thread's id (> 0).
int chost_seccomp_install(const struct sock_filter *filter, unsigned short count);
/// Adds a filter to the calling thread only; 0 or -errno.
int chost_seccomp_install_thread(const struct sock_filter *filter, unsigned short count);
int chost_SECCOMP_SET_MODE_FILTER(void);

// MARK: - End of Sandbox

// MARK: - Start-up code

// Drops this process's page mappings of every loaded object's read-only executable segments
// (MADV_DONTNEED; the vDSO excepted). The pages stay in the page cache, shared, and fault back
// in as code runs again, so only code that ran once (start-up) stops counting in the process's
// resident set. Not for a process under a debugger, whose breakpoints live in private copies of
// code pages that this would drop (the caller checks). Also returns start-up's freed heap pages
// (malloc_trim). Returns the code bytes released.
long chost_release_code_mappings(void);

// Makes every thread allocate from the main malloc arena (M_ARENA_MAX 1): a VM's threads allocate
// nothing on their hot paths, so a private arena per thread (a 64 MiB reservation and its first
// pages, set up on the thread's first allocation) would only cost start-up time and memory.
void chost_use_one_malloc_arena(void);

// MARK: - Jail (CJail.c)

// unshare(2); 0 or -errno. CLONE_* values the Swift Glibc module does not see (_GNU_SOURCE).
int chost_unshare(int flags);
int chost_clone_newns(void);
int chost_clone_newipc(void);
// mount(2), umount2(MNT_DETACH), pivot_root(2) (no glibc wrapper), mknod(2): 0 or -errno.
int chost_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);
int chost_umount_detach(const char *target);
int chost_pivot_root(const char *new_root, const char *put_old);
int chost_mknod(const char *path, unsigned int mode, unsigned long long device);
// MS_* mount flags.
unsigned long chost_ms_bind(void);
unsigned long chost_ms_rec(void);
unsigned long chost_ms_private(void);
unsigned long chost_ms_remount(void);
unsigned long chost_ms_rdonly(void);
unsigned long chost_ms_nosuid(void);
unsigned long chost_ms_nodev(void);
unsigned long chost_ms_noexec(void);

// Starts `path argv` as the first process (pid 1) of a new PID namespace: stdin from /dev/null,
// stdout and stderr on `output_fd`, a new session, no descriptor above 2, an empty signal mask
// and `default_signals` at their defaults. Returns the child's pid (as this process sees it) or
// -errno. Needs CAP_SYS_ADMIN.
pid_t chost_spawn_new_pid_namespace(const char *path, char *const argv[], char *const envp[], int output_fd,
                                    const int *default_signals, int signal_count);

// Accepts one connection on `listener` (close-on-exec) and gives the connecting process's pid
// (SO_PEERCRED; 0 when there is none). The connection's fd, or -errno.
int chost_accept_peer(int listener, int *peer_pid);

// Starts a container's VM process (`swiftlet oci create`): a child (pid 1 of a new PID namespace
// when clone_flags has CLONE_NEWPID) that joins the network namespace `netns_fd` (unless -1),
// unshares `unshare_flags` (CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC), takes `console_fd` (a pty
// slave, unless -1) as its stdio and controlling terminal, resets `default_signals` and its
// mask, then blocks opening FIFO `fifo` for writing until `swiftlet oci start` opens it, and
// execs `path`. Returns once the child is set up and waiting: its pid, or -1 with *error.
pid_t chost_spawn_container(const char *path, char *const argv[], char *const envp[], const char *fifo,
                            int clone_flags, int unshare_flags, int netns_fd, int console_fd,
                            const int *default_signals, int signal_count, int *error);

// Sends `fd` over the connected Unix socket `socket_fd` (one SCM_RIGHTS message whose data is
// `name`, as runc's --console-socket sends a pty master). 0 or -errno.
int chost_send_descriptor(int socket_fd, int fd, const char *name);

// Opens a pseudo-terminal pair: returns the master (or -errno) and puts the slave in *slave.
// Both close-on-exec, neither the caller's controlling terminal.
int chost_open_pty(int *slave);

// Starts `path` in the network namespace `netns_fd` (unless -1) with stdin /dev/null and stdout
// and stderr on `output_fd`; returns its pid once it has exec'd, or -1 with *error (also for a
// failed exec).
pid_t chost_spawn_in_netns(const char *path, char *const argv[], char *const envp[], int netns_fd, int output_fd, int *error);

// A pipe, both ends close-on-exec. 0 or -errno.
int chost_pipe(int fds[2]);

#endif
