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
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int i = 0; i < signal_count; i++) sigaction(default_signals[i], &dfl, NULL);
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        execve(path, argv, envp);
        _exit(127);
    }
    close(null_fd);
    return (pid_t)pid;
}
