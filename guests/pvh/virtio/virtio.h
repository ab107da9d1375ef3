/* A minimal virtio 1.x modern PCI driver for Swiftlet's freestanding PVH test guests.
 *
 * PCI configuration mechanism #1 (ports 0xCF8/0xCFC), the vendor-specific capability walk
 * (VIRTIO 1.2 4.1.4), the status handshake (3.1.1), split virtqueues (2.7) with rings in static
 * memory, and polling of the used ring: no interrupts (MSI-X stays disabled). Every wait is
 * bounded (TSC deadline), so a broken VMM makes the guest report a failure instead of hanging.
 * Guest RAM is identity mapped: ring and buffer addresses are plain pointers. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include "../guest.h"

/* ---- PCI ---- */
uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v);
uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);

/* ---- device ---- */
#define VIRTIO_STATUS_ACK         1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

#define VIRTIO_F_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_EVENT_IDX     (1ull << 29)
#define VIRTIO_F_VERSION_1     (1ull << 32)

#define VIRTIO_DEV_BLK 0x1042
#define VIRTIO_DEV_RNG 0x1044

/* struct virtio_pci_common_cfg offsets (4.1.4.3). */
enum {
    VCOMMON_DFSELECT = 0, VCOMMON_DF = 4, VCOMMON_GFSELECT = 8, VCOMMON_GF = 12, VCOMMON_MSIX = 16,
    VCOMMON_NUMQ = 18, VCOMMON_STATUS = 20, VCOMMON_CFGGEN = 21, VCOMMON_Q_SELECT = 22,
    VCOMMON_Q_SIZE = 24, VCOMMON_Q_MSIX = 26, VCOMMON_Q_ENABLE = 28, VCOMMON_Q_NOFF = 30,
    VCOMMON_Q_DESCLO = 32, VCOMMON_Q_DESCHI = 36, VCOMMON_Q_AVAILLO = 40, VCOMMON_Q_AVAILHI = 44,
    VCOMMON_Q_USEDLO = 48, VCOMMON_Q_USEDHI = 52,
};

struct vdev {
    uint8_t bus, dev, fn;
    uint16_t device_id;
    uint64_t bar0;
    volatile uint8_t *common, *notify, *isr, *devcfg;
    uint32_t notify_mult, notify_len, devcfg_len;
};

/* Finds the nth (0-based) virtio function with PCI device id `device_id` on bus 0 and walks its
 * capabilities. Returns 0 on success, -1 when absent or malformed (printing why). */
int vdev_find(uint16_t device_id, int nth, struct vdev *d);
uint8_t vdev_status(struct vdev *d);
void vdev_set_status(struct vdev *d, uint8_t s);
/* Writes 0 to device_status and waits (bounded) until it reads back 0. */
int vdev_reset(struct vdev *d);
/* Reset, ACK, DRIVER, accept `wanted & offered` (VERSION_1 is required), FEATURES_OK and
 * check it stuck. Returns the negotiated features, or 0 on failure. */
uint64_t vdev_negotiate(struct vdev *d, uint64_t wanted);
/* Sets DRIVER_OK; returns the status read back afterwards. */
uint8_t vdev_driver_ok(struct vdev *d);
static inline uint8_t vcfg8(struct vdev *d, uint32_t off) { return *(volatile uint8_t *)(d->devcfg + off); }
static inline uint32_t vcfg32(struct vdev *d, uint32_t off) { return *(volatile uint32_t *)(d->devcfg + off); }
static inline uint64_t vcfg64(struct vdev *d, uint32_t off)
{
    uint32_t lo = vcfg32(d, off), hi = vcfg32(d, off + 4);
    return (uint64_t)hi << 32 | lo;
}
void vcommon_w16(struct vdev *d, uint32_t off, uint16_t v);
void vcommon_w32(struct vdev *d, uint32_t off, uint32_t v);
uint16_t vcommon_r16(struct vdev *d, uint32_t off);
uint32_t vcommon_r32(struct vdev *d, uint32_t off);

/* ---- split virtqueue ---- */
#define VQ_MAX 256
#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4

struct vring_desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vring_avail { uint16_t flags, idx, ring[VQ_MAX], used_event; };
struct vring_used_elem { uint32_t id, len; };
struct vring_used { uint16_t flags, idx; struct vring_used_elem ring[VQ_MAX]; uint16_t avail_event; };

struct vq {
    struct vdev *dev;
    uint16_t index, size;
    uint16_t avail_idx;   /* our shadow of avail->idx */
    uint16_t last_used;   /* used entries consumed so far */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    volatile uint16_t *doorbell;
};

/* Sets up queue `index` with `size` entries (0: the device's queue_size, capped at VQ_MAX) in
 * static ring storage slot `slot` (0 or 1). `enable`: write queue_enable = 1. Does not set
 * DRIVER_OK. Returns 0 or -1. `size` is written as is when non-zero (attacks use a bad one). */
int vq_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t size, int slot, int enable);
void vq_kick(struct vq *q);
/* Makes chain `head` available (does not kick). */
void vq_publish(struct vq *q, uint16_t head);
/* Waits for the next used element; returns 0 and fills id/len, or -1 on timeout. */
int vq_wait_used(struct vq *q, uint32_t *id, uint32_t *len, uint64_t timeout_ms);
/* Non-blocking: 1 and fills id/len when a used element is pending, else 0. */
int vq_poll_used(struct vq *q, uint32_t *id, uint32_t *len);

/* A buffer of a request: device-readable unless `write`. */
struct vbuf { void *addr; uint32_t len; int write; };
/* Builds descriptors 0..n-1 as one chain, publishes, kicks, waits. Returns 0 and the used length,
 * or -1 on timeout (or a used id other than 0). */
int vq_transfer(struct vq *q, const struct vbuf *bufs, int n, uint32_t *used_len, uint64_t timeout_ms);

/* ---- small helpers ---- */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void mb(void) { __asm__ volatile("lock; addl $0,(%%rsp)" ::: "memory", "cc"); }
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
/* TSC ticks per millisecond: CPUID 0x15/0x16 when present, else a 1 GHz guess (timeouts only). */
uint64_t tsc_per_ms(void);
void *vmemset(void *p, int c, size_t n);
void *vmemcpy(void *d, const void *s, size_t n);
int vstreq(const char *a, const char *b);
/* Splits the command line: returns the next word in `out` (max n-1 chars), advancing *p. */
int next_word(const char **p, char *out, int n);
/* "4k", "1M", "512" -> bytes. */
uint64_t parse_size(const char *s);
#endif
