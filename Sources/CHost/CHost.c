// For dl_iterate_phdr (<link.h>) and the other GNU extensions below.
#define _GNU_SOURCE
#include "CHost.h"
#include <net/if.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

int chost_tap_open(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int chost_tap_open_vnet(const char *name, int create, int vnet_header_size) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (create ? IFF_TUN_EXCL : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int hdr = vnet_header_size;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        (create && ioctl(fd, TUNSETPERSIST, 0) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int chost_tap_query(int fd, char name[16], int *flags) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -errno;
    memcpy(name, ifr.ifr_name, IFNAMSIZ);
    name[IFNAMSIZ - 1] = 0;
    *flags = ifr.ifr_flags;
    if (!(ifr.ifr_flags & IFF_TAP)) return -EPROTOTYPE;
    if (ifr.ifr_flags & IFF_VNET_HDR) return -EPROTONOSUPPORT;
    return (ifr.ifr_flags & IFF_NO_PI) ? 0 : -EPFNOSUPPORT;
}

#include <poll.h>
int chost_poll2(int a, int b, int timeout_ms) {
    struct pollfd fds[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    if (poll(fds, 2, timeout_ms) <= 0) return 0;
    return ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0) |
           ((fds[1].revents & (POLLIN | POLLERR | POLLHUP)) ? 2 : 0);
}

int chost_if_mtu(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int r = ioctl(sock, SIOCGIFMTU, &ifr) < 0 ? -errno : ifr.ifr_mtu;
    close(sock);
    return r;
}

int chost_tap_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0 ? -errno : 0;
}

uint32_t chost_TUNSETOFFLOAD(void) { return TUNSETOFFLOAD; }

// MARK: - Sandbox (seccomp-BPF filter and privilege drop; used by Host/Sandbox.swift)

#include <sys/syscall.h>

struct chost_syscall_entry { const char *name; int number; };
#define S(name) { #name, __NR_##name },
// From 424 on, numbers are the same on every architecture; literal so that older headers build.
#define SN(name, number) { #name, number },
static const struct chost_syscall_entry chost_syscalls[] = {
#if defined(__x86_64__)
    S(read) S(write) S(open) S(close) S(stat) S(fstat) S(lstat) S(poll) S(lseek) S(mmap) S(mprotect)
    S(munmap) S(brk) S(rt_sigaction) S(rt_sigprocmask) S(rt_sigreturn) S(ioctl) S(pread64) S(pwrite64)
    S(readv) S(writev) S(access) S(pipe) S(select) S(sched_yield) S(mremap) S(msync) S(mincore)
    S(madvise) S(shmget) S(shmat) S(shmctl) S(dup) S(dup2) S(pause) S(nanosleep) S(getitimer) S(alarm)
    S(setitimer) S(getpid) S(sendfile) S(socket) S(connect) S(accept) S(sendto) S(recvfrom) S(sendmsg)
    S(recvmsg) S(shutdown) S(bind) S(listen) S(getsockname) S(getpeername) S(socketpair) S(setsockopt)
    S(getsockopt) S(clone) S(fork) S(vfork) S(execve) S(exit) S(wait4) S(kill) S(uname) S(semget)
    S(semop) S(semctl) S(shmdt) S(msgget) S(msgsnd) S(msgrcv) S(msgctl) S(fcntl) S(flock) S(fsync)
    S(fdatasync) S(truncate) S(ftruncate) S(getdents) S(getcwd) S(chdir) S(fchdir) S(rename) S(mkdir)
    S(rmdir) S(creat) S(link) S(unlink) S(symlink) S(readlink) S(chmod) S(fchmod) S(chown) S(fchown)
    S(lchown) S(umask) S(gettimeofday) S(getrlimit) S(getrusage) S(sysinfo) S(times) S(ptrace)
    S(getuid) S(syslog) S(getgid) S(setuid) S(setgid) S(geteuid) S(getegid) S(setpgid) S(getppid)
    S(getpgrp) S(setsid) S(setreuid) S(setregid) S(getgroups) S(setgroups) S(setresuid) S(getresuid)
    S(setresgid) S(getresgid) S(getpgid) S(setfsuid) S(setfsgid) S(getsid) S(capget) S(capset)
    S(rt_sigpending) S(rt_sigtimedwait) S(rt_sigqueueinfo) S(rt_sigsuspend) S(sigaltstack) S(utime)
    S(mknod) S(uselib) S(personality) S(ustat) S(statfs) S(fstatfs) S(sysfs) S(getpriority)
    S(setpriority) S(sched_setparam) S(sched_getparam) S(sched_setscheduler) S(sched_getscheduler)
    S(sched_get_priority_max) S(sched_get_priority_min) S(sched_rr_get_interval) S(mlock) S(munlock)
    S(mlockall) S(munlockall) S(vhangup) S(modify_ldt) S(pivot_root) S(_sysctl) S(prctl) S(arch_prctl)
    S(adjtimex) S(setrlimit) S(chroot) S(sync) S(acct) S(settimeofday) S(mount) S(umount2) S(swapon)
    S(swapoff) S(reboot) S(sethostname) S(setdomainname) S(iopl) S(ioperm) S(create_module)
    S(init_module) S(delete_module) S(get_kernel_syms) S(query_module) S(quotactl) S(nfsservctl)
    S(getpmsg) S(putpmsg) S(afs_syscall) S(tuxcall) S(security) S(gettid) S(readahead) S(setxattr)
    S(lsetxattr) S(fsetxattr) S(getxattr) S(lgetxattr) S(fgetxattr) S(listxattr) S(llistxattr)
    S(flistxattr) S(removexattr) S(lremovexattr) S(fremovexattr) S(tkill) S(time) S(futex)
    S(sched_setaffinity) S(sched_getaffinity) S(set_thread_area) S(io_setup) S(io_destroy)
    S(io_getevents) S(io_submit) S(io_cancel) S(get_thread_area) S(lookup_dcookie) S(epoll_create)
    S(epoll_ctl_old) S(epoll_wait_old) S(remap_file_pages) S(getdents64) S(set_tid_address)
    S(restart_syscall) S(semtimedop) S(fadvise64) S(timer_create) S(timer_settime) S(timer_gettime)
    S(timer_getoverrun) S(timer_delete) S(clock_settime) S(clock_gettime) S(clock_getres)
    S(clock_nanosleep) S(exit_group) S(epoll_wait) S(epoll_ctl) S(tgkill) S(utimes) S(vserver) S(mbind)
    S(set_mempolicy) S(get_mempolicy) S(mq_open) S(mq_unlink) S(mq_timedsend) S(mq_timedreceive)
    S(mq_notify) S(mq_getsetattr) S(kexec_load) S(waitid) S(add_key) S(request_key) S(keyctl)
    S(ioprio_set) S(ioprio_get) S(inotify_init) S(inotify_add_watch) S(inotify_rm_watch)
    S(migrate_pages) S(openat) S(mkdirat) S(mknodat) S(fchownat) S(futimesat) S(newfstatat) S(unlinkat)
    S(renameat) S(linkat) S(symlinkat) S(readlinkat) S(fchmodat) S(faccessat) S(pselect6) S(ppoll)
    S(unshare) S(set_robust_list) S(get_robust_list) S(splice) S(tee) S(sync_file_range) S(vmsplice)
    S(move_pages) S(utimensat) S(epoll_pwait) S(signalfd) S(timerfd_create) S(eventfd) S(fallocate)
    S(timerfd_settime) S(timerfd_gettime) S(accept4) S(signalfd4) S(eventfd2) S(epoll_create1) S(dup3)
    S(pipe2) S(inotify_init1) S(preadv) S(pwritev) S(rt_tgsigqueueinfo) S(perf_event_open) S(recvmmsg)
    S(fanotify_init) S(fanotify_mark) S(prlimit64) S(name_to_handle_at) S(open_by_handle_at)
    S(clock_adjtime) S(syncfs) S(sendmmsg) S(setns) S(getcpu) S(process_vm_readv) S(process_vm_writev)
    S(kcmp) S(finit_module) S(sched_setattr) S(sched_getattr) S(renameat2) S(seccomp) S(getrandom)
    S(memfd_create) S(kexec_file_load) S(bpf) S(execveat) S(userfaultfd) S(membarrier) S(mlock2)
    S(copy_file_range) S(preadv2) S(pwritev2) S(pkey_mprotect) S(pkey_alloc) S(pkey_free) S(statx)
    S(io_pgetevents) S(rseq)
    SN(pidfd_send_signal, 424) SN(io_uring_setup, 425) SN(io_uring_enter, 426)
    SN(io_uring_register, 427) SN(open_tree, 428) SN(move_mount, 429) SN(fsopen, 430) SN(fsconfig, 431)
    SN(fsmount, 432) SN(fspick, 433) SN(pidfd_open, 434) SN(clone3, 435) SN(close_range, 436)
    SN(openat2, 437) SN(pidfd_getfd, 438) SN(faccessat2, 439) SN(process_madvise, 440)
    SN(epoll_pwait2, 441) SN(mount_setattr, 442) SN(quotactl_fd, 443) SN(landlock_create_ruleset, 444)
    SN(landlock_add_rule, 445) SN(landlock_restrict_self, 446) SN(memfd_secret, 447)
    SN(process_mrelease, 448) SN(futex_waitv, 449) SN(set_mempolicy_home_node, 450)
#else
    { "unsupported", -1 }, // the filter checks for x86-64; other architectures have no table yet
#endif
};
#undef S
#undef SN

unsigned chost_syscall_count(void) { return sizeof chost_syscalls / sizeof chost_syscalls[0]; }
const char *chost_syscall_name(unsigned index) { return index < chost_syscall_count() ? chost_syscalls[index].name : NULL; }
int chost_syscall_number(unsigned index) { return index < chost_syscall_count() ? chost_syscalls[index].number : -1; }

// Declared here because <unistd.h> shows them only under _GNU_SOURCE.
extern int setresuid(uid_t, uid_t, uid_t);
extern int setresgid(gid_t, gid_t, gid_t);
extern int getresuid(uid_t *, uid_t *, uid_t *);
extern int getresgid(gid_t *, gid_t *, gid_t *);

int chost_setresuid(uint32_t uid) { return setresuid(uid, uid, uid) == 0 ? 0 : -errno; }
int chost_setresgid(uint32_t gid) { return setresgid(gid, gid, gid) == 0 ? 0 : -errno; }
int chost_getresuid(uint32_t *real, uint32_t *effective, uint32_t *saved) {
    return getresuid(real, effective, saved) == 0 ? 0 : -errno;
}
int chost_getresgid(uint32_t *real, uint32_t *effective, uint32_t *saved) {
    return getresgid(real, effective, saved) == 0 ? 0 : -errno;
}

int chost_seccomp_install(const struct sock_filter *filter, unsigned short count) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    struct sock_fprog program = { .len = count, .filter = (struct sock_filter *)filter };
    long result = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
    if (result < 0) return -errno;
    return (int)result;
}

// One more filter for the calling thread only (no TSYNC): the process filter has set
// PR_SET_NO_NEW_PRIVS on every thread already, and forbids prctl for it anyway.
int chost_seccomp_install_thread(const struct sock_filter *filter, unsigned short count) {
    struct sock_fprog program = { .len = count, .filter = (struct sock_filter *)filter };
    long result = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);
    return result < 0 ? -errno : 0;
}

int chost_SECCOMP_SET_MODE_FILTER(void) { return SECCOMP_SET_MODE_FILTER; }

// MARK: - End of Sandbox

// Functions Swift's Glibc module does not import (behind _GNU_SOURCE, variadic, or too new),
// wrapped here instead of looked up with dlsym at run time. Each returns 0 or -errno.
extern int fallocate(int fd, int mode, off_t offset, off_t len);
int chost_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length) == 0 ? 0 : -errno;
}

#include <sys/ptrace.h>
long chost_ptrace_traceme(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? -errno : 0; }

int chost_pidfd_open(int pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int chost_pidfd_send_signal(int pidfd, int signal) {
    return syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0) < 0 ? -errno : 0;
}

#include <spawn.h>
// glibc 2.34's posix_spawn_file_actions_addclosefrom_np, weak so an older libc still links.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int) __attribute__((weak));
int chost_spawn_close_from(void *actions, int lowest) {
    if (!posix_spawn_file_actions_addclosefrom_np) return -ENOSYS;
    int r = posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowest);
    return r == 0 ? 0 : -r;
}

// MARK: - Start-up code

#include <link.h>
#include <malloc.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>

static int chost_release_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    long *released = data;
    unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        // Code only: a writable segment may hold data of ours that exists nowhere else.
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || (ph->p_flags & PF_W)) continue;
        uintptr_t start = (uintptr_t)(info->dlpi_addr + ph->p_vaddr);
        if (vdso && start >= vdso && start < vdso + (uintptr_t)page * 16) continue;
        uintptr_t end = start + ph->p_filesz;
        // Whole pages inside the segment's file contents: a partial page at either end may be
        // shared with a neighbouring (writable) segment.
        uintptr_t first = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
        uintptr_t last = end & ~((uintptr_t)page - 1);
        if (last > first && madvise((void *)first, last - first, MADV_DONTNEED) == 0) *released += (long)(last - first);
    }
    return 0;
}

long chost_release_code_mappings(void) {
    // Start-up's freed allocations too (the image file, parsing): glibc keeps freed heap pages
    // resident until told; malloc_trim returns every whole free page of every arena.
    malloc_trim(0);
    long released = 0;
    dl_iterate_phdr(chost_release_object, &released);
    return released;
}

void chost_use_one_malloc_arena(void) { mallopt(M_ARENA_MAX, 1); }

// MARK: - Confined helper processes (extensions)

#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <errno.h>

pid_t chost_spawn_confined(const char *path, char *const argv[], char *const envp[], int channel,
                           const struct sock_filter *filter, unsigned short count, int uid, int gid, int *error) {
    struct sock_fprog program = {.len = count, .filter = (struct sock_filter *)filter};
    volatile int failure = 0;
    // vfork: the child shares our memory until execve, so it copies no page tables of a large
    // guest, and `failure` reaches us; it makes system calls only.
    pid_t pid = vfork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(channel, 3) < 0) { failure = errno; _exit(127); }
        syscall(SYS_close_range, 4u, ~0u, 0u);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int reset[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT};
        for (unsigned i = 0; i < sizeof reset / sizeof reset[0]; i++) signal(reset[i], SIG_DFL);
        if (gid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0)) { failure = errno; _exit(127); }
        if (uid >= 0 && setuid((uid_t)uid) != 0) { failure = errno; _exit(127); }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { failure = errno; _exit(127); }
        // It ends with the VMM, even one that died without closing its end (the signal follows
        // the thread that spawned it: the VMM's main or API thread, which live as long as it).
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) { failure = errno; _exit(127); }
        if (count > 0 && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) { failure = errno; _exit(127); }
        execve(path, argv, envp);
        failure = errno;
        _exit(127);
    }
    if (pid < 0) { *error = errno; return -1; }
    if (failure != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *error = failure;
        return -1;
    }
    *error = 0;
    return pid;
}

int chost_accept_peer(int listener, int *peer_pid) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return -errno;
    struct ucred credentials;
    socklen_t size = sizeof credentials;
    *peer_pid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0 ? credentials.pid : 0;
    return fd;
}

int chost_send_descriptor(int socket_fd, int fd, const char *name) {
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name)};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof fd);
    ssize_t n;
    do { n = sendmsg(socket_fd, &message, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int chost_open_pty(int *slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -errno;
    char name[128];
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) {
        int e = errno;
        close(master);
        return -e;
    }
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) {
        int e = errno;
        close(master);
        return -e;
    }
    return master;
}
