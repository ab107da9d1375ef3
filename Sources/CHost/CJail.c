// The jail's system calls (Host/Jail.swift): namespaces, mounts, pivot_root, device nodes, and a
// spawn into a new PID namespace. Kept apart from CHost.c so the jail stays one additive piece.
#define _GNU_SOURCE
#include "CHost.h"
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

int chost_unshare(int flags) { return unshare(flags) == 0 ? 0 : -errno; }
int chost_clone_newns(void) { return CLONE_NEWNS; }
int chost_clone_newipc(void) { return CLONE_NEWIPC; }

int chost_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data) == 0 ? 0 : -errno;
}

int chost_umount_detach(const char *target) { return umount2(target, MNT_DETACH) == 0 ? 0 : -errno; }

int chost_pivot_root(const char *new_root, const char *put_old) {
    return syscall(SYS_pivot_root, new_root, put_old) == 0 ? 0 : -errno;
}

int chost_mknod(const char *path, unsigned int mode, unsigned long long device) {
    return mknod(path, (mode_t)mode, (dev_t)device) == 0 ? 0 : -errno;
}

unsigned long chost_ms_bind(void) { return MS_BIND; }
unsigned long chost_ms_rec(void) { return MS_REC; }
unsigned long chost_ms_private(void) { return MS_PRIVATE; }
unsigned long chost_ms_remount(void) { return MS_REMOUNT; }
unsigned long chost_ms_rdonly(void) { return MS_RDONLY; }
unsigned long chost_ms_nosuid(void) { return MS_NOSUID; }
unsigned long chost_ms_nodev(void) { return MS_NODEV; }
unsigned long chost_ms_noexec(void) { return MS_NOEXEC; }

// In a new child before it execs: `signals` back to their default action, and none blocked.
static void reset_signals(const int *signals, int count) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < count; i++) sigaction(signals[i], &dfl, NULL);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
}

pid_t chost_spawn_new_pid_namespace(const char *path, char *const argv[], char *const envp[], int output_fd,
                                    const int *default_signals, int signal_count) {
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) return -errno;
    // A raw clone, like fork but with CLONE_NEWPID: the child runs only async-signal-safe system
    // calls until execve (the caller may have threads whose locks a forked child must not touch).
    long pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(null_fd);
        return -e;
    }
    if (pid == 0) {
        setsid();
        if (dup2(null_fd, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0) _exit(127);
        syscall(SYS_close_range, 3, ~0U, 0);
        reset_signals(default_signals, signal_count);
        execve(path, argv, envp);
        _exit(127);
    }
    close(null_fd);
    return (pid_t)pid;
}

// The parent's side of a child's report pipe: the child writes an errno and exits when it fails
// before it is set up (or before its exec); EOF means it got there. Returns its pid, or -1 with
// *error after reaping it.
static pid_t await_child_report(int report[2], long pid, int *error) {
    close(report[1]);
    int failure = 0;
    ssize_t n;
    do { n = read(report[0], &failure, sizeof failure); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof failure) {
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
        *error = failure;
        return -1;
    }
    *error = 0;
    return (pid_t)pid;
}

pid_t chost_spawn_container(const char *path, char *const argv[], char *const envp[], const char *fifo,
                            int clone_flags, int unshare_flags, int netns_fd, int console_fd,
                            const int *default_signals, int signal_count, int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) { *error = errno; return -1; }
    // A raw clone, like fork (plus CLONE_NEWPID when asked): the child runs only
    // async-signal-safe system calls, since the caller may have threads holding locks.
    long pid = syscall(SYS_clone, (clone_flags & CLONE_NEWPID) | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        *error = errno;
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (pid == 0) {
        int failure = 0;
        close(report[0]);
        if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) failure = errno;
        if (!failure && unshare_flags && unshare(unshare_flags) != 0) failure = errno;
        if (!failure && console_fd >= 0) {
            // The console's slave end becomes the VM's stdio and controlling terminal.
            if (setsid() < 0 || ioctl(console_fd, TIOCSCTTY, 0) != 0 || dup2(console_fd, 0) < 0 ||
                dup2(console_fd, 1) < 0 || dup2(console_fd, 2) < 0) failure = errno;
        }
        if (failure) {
            (void)!write(report[1], &failure, sizeof failure);
            _exit(127);
        }
        // Nothing but stdio and the report pipe (moved to 3) stays open: the process waits for
        // `start`, maybe long, and must hold no descriptor of its creator's caller (a pipe its
        // reader waits to see closed).
        if (report[1] != 3) {
            if (dup2(report[1], 3) < 0) _exit(127);
            report[1] = 3;
        }
        syscall(SYS_close_range, 4, ~0U, 0);
        reset_signals(default_signals, signal_count);
        // Set up: the creator may return. Then wait for `start`, which opens the FIFO to read.
        close(3);
        int gate = open(fifo, O_WRONLY | O_CLOEXEC);
        if (gate < 0) _exit(127);
        (void)!write(gate, "0", 1);
        close(gate);
        execve(path, argv, envp);
        _exit(127);
    }
    return await_child_report(report, pid, error);
}

pid_t chost_spawn_in_netns(const char *path, char *const argv[], char *const envp[], int netns_fd, int output_fd, int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) { *error = errno; return -1; }
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        *error = errno;
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (pid == 0) {
        close(report[0]);
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int failure = 0;
        if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) failure = errno;
        if (!failure && (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0)) failure = errno;
        if (!failure) {
            // report[1] stays open (close-on-exec) so a failed exec is reported too.
            int keep = report[1];
            if (keep != 3) { if (dup2(keep, 3) < 0) failure = errno; else keep = 3; }
            if (!failure) {
                fcntl(3, F_SETFD, FD_CLOEXEC);
                syscall(SYS_close_range, 4, ~0U, 0);
                sigset_t empty;
                sigemptyset(&empty);
                sigprocmask(SIG_SETMASK, &empty, NULL);
                execve(path, argv, envp);
                failure = errno;
                report[1] = 3;
            }
        }
        (void)!write(report[1], &failure, sizeof failure);
        _exit(127);
    }
    return await_child_report(report, pid, error);
}

int chost_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno; }
