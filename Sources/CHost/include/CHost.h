// CHost: C shims for host OS interfaces Swift cannot reach directly (variadic ioctl/fcntl, macros).
// Used by the Host target only; no KVM here.
#ifndef CHOST_H
#define CHOST_H

#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
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
// TUNSETOFFLOAD: which offloads (TUN_F_*) the reader of this tap accepts. 0 or -errno.
int chost_tap_set_offload(int fd, unsigned int flags);

static inline long chost_getrandom(void *buf, unsigned long n) { return getrandom(buf, n, 0); }

static inline int chost_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

static inline int chost_open(const char *path, int flags) { return open(path, flags | O_CLOEXEC, 0644); }

// epoll and timerfd through plain integers: struct epoll_event is packed on x86-64, which Swift
// imports poorly, and the TFD_/EPOLL_ constants are macros.
static inline int chost_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }
static inline int chost_epoll_add_input(int ep, int fd, uint64_t token) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = token };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}
// Waits and stores the tokens of ready descriptors in `tokens`; returns the count or -errno.
static inline int chost_epoll_wait_tokens(int ep, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(ep, evs, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) tokens[i] = evs[i].data.u64;
    return n;
}
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

#endif
