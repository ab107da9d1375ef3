/* attack: posts malicious requests to the virtio-blk queue, one at a time, and checks the VMM
 * survives and keeps answering. For each attack it prints
 *     attack NAME: survived (what the device did)
 * or "attack NAME: FAILED (...)"; after every one a normal read must still complete. Chain errors
 * must be returned unused (used length 0) without breaking the queue; a corrupted ring (avail.idx
 * too far ahead, bad queue size, ring outside RAM) must set DEVICE_NEEDS_RESET, after which a
 * reset brings the device back. Exits 0 if everything behaved, 1 otherwise. Needs a writable
 * disk of at least 16 sectors (sector 1 is read). */
#include "virtio/blkreq.h"

static struct vdev dev;
static struct vq q;
static struct blk_hdr hdr __attribute__((aligned(16)));
static volatile uint8_t status;
static uint8_t data[4096] __attribute__((aligned(4096)));
static struct vring_desc itable[8] __attribute__((aligned(16)));
static int failures;

#define FAR_AWAY (1ull << 40)          /* 1 TiB: far outside guest RAM */
#define WAIT_MS 2000

static void put_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    q.desc[i] = (struct vring_desc){ addr, len, flags, next };
}

static void line(const char *name, int ok, const char *what, uint64_t v)
{
    serial_puts("attack ");
    serial_puts(name);
    serial_puts(ok ? ": survived (" : ": FAILED (");
    serial_puts(what);
    if (v != ~0ull) { serial_puts(" "); serial_putu(v); }
    serial_puts(")\n");
    if (!ok) failures++;
}

static int open_device(void)
{
    return blk_open(&dev, &q, VIRTIO_F_INDIRECT_DESC) ? 0 : -1;
}

/* A normal one-sector read of sector 1: the device must still answer. */
static int sane(void)
{
    if (vdev_status(&dev) & VIRTIO_STATUS_NEEDS_RESET) return -1;
    struct vbuf b = { data, 512, 1 };
    uint32_t len = 0;
    int s = blk_request(&q, VIRTIO_BLK_T_IN, 1, &b, 1, &len);
    return s == VIRTIO_BLK_S_OK && len == 513 ? 0 : -1;
}

/* Starts a read-of-sector-1 header and clears the status byte. */
static void prep(void)
{
    hdr = (struct blk_hdr){ VIRTIO_BLK_T_IN, 0, 1 };
    status = 0xFF;
}

/* Publishes chain `head`, kicks, waits. Returns 1 and the used length when it came back. */
static int post(uint16_t head, uint32_t *len, uint64_t ms)
{
    vq_publish(&q, head);
    vq_kick(&q);
    uint32_t id = 0;
    *len = 0;
    if (vq_wait_used(&q, &id, len, ms)) return 0;
    return id == head ? 1 : -1;
}

/* A chain the device must hand back unused: used length 0, status untouched, queue still fine. */
static void expect_unused(const char *name, uint16_t head)
{
    uint32_t len;
    int r = post(head, &len, WAIT_MS);
    int alive = sane() == 0;
    if (r != 1) line(name, 0, r == 0 ? "no used entry" : "wrong used id", ~0ull);
    else if (!alive) line(name, 0, "device stopped answering afterwards", ~0ull);
    else if (len != 0 || status != 0xFF) line(name, 0, "chain was used, length", len);
    else line(name, 1, "returned unused, used len 0; next request ok", ~0ull);
}

/* Resets and reopens the device after an attack that broke it, then checks a normal read. */
static int recover(void)
{
    if (vdev_reset(&dev) || open_device()) return -1;
    return sane();
}

/* Waits (bounded) for DEVICE_NEEDS_RESET. */
static int wait_needs_reset(void)
{
    uint64_t end = rdtsc() + WAIT_MS * tsc_per_ms();
    while (!(vdev_status(&dev) & VIRTIO_STATUS_NEEDS_RESET))
        if (rdtsc() > end) return 0;
    return 1;
}

static void expect_needs_reset(const char *name)
{
    int broke = wait_needs_reset();
    int back = recover() == 0;
    if (!broke) line(name, 0, "DEVICE_NEEDS_RESET not set", vdev_status(&dev));
    else if (!back) line(name, 0, "device did not come back after reset", ~0ull);
    else line(name, 1, "DEVICE_NEEDS_RESET set; reset, then a normal request ok", ~0ull);
}

int guest_main(struct hvm_start_info *si)
{
    (void)si;
    if (open_device()) { serial_puts("FAIL setup\n"); return 1; }
    if (sane()) { serial_puts("FAIL a normal request before any attack\n"); return 1; }
    uint16_t n = q.size;
    serial_puts("attack: queue size ");
    serial_putu(n);
    serial_puts(", BAR0 ");
    serial_puthex(dev.bar0);
    serial_puts("\n");

    /* 1. A data buffer outside guest RAM. */
    prep();
    put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 11);
    put_desc(11, FAR_AWAY, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 12);
    put_desc(12, (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0);
    expect_unused("desc-outside-ram", 10);

    /* 2. A data buffer on the device's own MMIO BAR (not RAM). */
    prep();
    put_desc(11, dev.bar0, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 12);
    expect_unused("desc-on-mmio-bar", 10);

    /* 3. address + length wraps around 2^64. */
    prep();
    put_desc(11, 0xFFFFFFFFFFFFFE00ull, 0x1000, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 12);
    expect_unused("addr-len-overflow", 10);
    /* ... and one that ends just past the top of RAM's 4 GiB window while starting inside RAM. */
    prep();
    put_desc(11, (uintptr_t)data, 0xFFFFFFFFu, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 12);
    expect_unused("len-past-ram", 10);

    /* 4. Zero-length descriptors: skipped inside a request (bogus addresses never touched); a
     *    chain of nothing but zero-length buffers has no status byte and comes back unused. */
    {
        prep();
        put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 13);
        put_desc(13, FAR_AWAY, 0, VRING_DESC_F_NEXT, 11);
        put_desc(11, (uintptr_t)data, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 14);
        put_desc(14, 0xFFFFFFFFFFFFFFFFull, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 12);
        put_desc(12, (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0);
        uint32_t len;
        int r = post(10, &len, WAIT_MS);
        int ok1 = r == 1 && status == VIRTIO_BLK_S_OK && len == 513;
        put_desc(20, FAR_AWAY, 0, VRING_DESC_F_NEXT, 21);
        put_desc(21, 0, 0, VRING_DESC_F_WRITE, 0);
        r = post(20, &len, WAIT_MS);
        int ok2 = r == 1 && len == 0;
        int alive = sane() == 0;
        line("zero-length", ok1 && ok2 && alive,
             ok1 && ok2 ? "skipped in a read (status OK, len 513); all-empty chain unused; next request ok"
                        : "unexpected completion", ok1 && ok2 ? ~0ull : (uint64_t)len);
    }

    /* 5. A descriptor loop: 10 -> 11 -> 10 -> ... (and a self loop). */
    prep();
    put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 11);
    put_desc(11, (uintptr_t)data, 512, VRING_DESC_F_NEXT, 10);
    expect_unused("desc-loop", 10);
    prep();
    put_desc(15, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 15);
    expect_unused("desc-self-loop", 15);

    /* 6. next >= queue size. */
    prep();
    put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, (uint16_t)(n + 5));
    expect_unused("next-out-of-range", 10);
    prep();
    put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 0xFFFF);
    expect_unused("next-0xffff", 10);

    /* 7. A head index >= queue size in the avail ring: no chain to return; the entry is consumed
     *    and the queue must stay usable. */
    {
        q.avail->ring[q.avail_idx & (n - 1)] = (uint16_t)(n + 1);
        barrier();
        q.avail_idx++;
        *(volatile uint16_t *)&q.avail->idx = q.avail_idx;
        vq_kick(&q);
        uint32_t id, len;
        int got = vq_wait_used(&q, &id, &len, 300) == 0;
        int alive = sane() == 0;
        line("head-out-of-range", alive && !got,
             alive ? (got ? "device returned a bogus head" : "entry skipped, nothing used; next request ok")
                   : "device stopped answering", ~0ull);
    }

    /* 8. Indirect tables: outside RAM, a length that is not a multiple of 16, an entry whose next
     *    leaves the table, a nested indirect, INDIRECT together with NEXT. */
    prep();
    put_desc(10, FAR_AWAY, 64, VRING_DESC_F_INDIRECT, 0);
    expect_unused("indirect-out-of-bounds", 10);
    prep();
    put_desc(10, 0xFFFFFFFFFFFFFFF0ull, 32, VRING_DESC_F_INDIRECT, 0);
    expect_unused("indirect-addr-overflow", 10);
    prep();
    put_desc(10, (uintptr_t)itable, 17, VRING_DESC_F_INDIRECT, 0);
    expect_unused("indirect-bad-length", 10);
    prep();
    itable[0] = (struct vring_desc){ (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 1 };
    itable[1] = (struct vring_desc){ (uintptr_t)data, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 9 };
    put_desc(10, (uintptr_t)itable, 2 * sizeof itable[0], VRING_DESC_F_INDIRECT, 0);
    expect_unused("indirect-next-out-of-table", 10);
    prep();
    itable[1] = (struct vring_desc){ (uintptr_t)itable, 2 * sizeof itable[0], VRING_DESC_F_INDIRECT, 0 };
    expect_unused("indirect-nested", 10);
    prep();
    itable[0] = (struct vring_desc){ (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 1 };
    itable[1] = (struct vring_desc){ (uintptr_t)data, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2 };
    itable[2] = (struct vring_desc){ (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0 };
    put_desc(10, (uintptr_t)itable, 3 * sizeof itable[0], VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 11);
    put_desc(11, (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0);
    expect_unused("indirect-with-next", 10);
    {   /* A well-formed indirect request still works. */
        prep();
        put_desc(10, (uintptr_t)itable, 3 * sizeof itable[0], VRING_DESC_F_INDIRECT, 0);
        uint32_t len;
        int r = post(10, &len, WAIT_MS);
        line("indirect-valid-control", r == 1 && len == 513 && status == VIRTIO_BLK_S_OK,
             "a correct indirect read completes, len", len);
    }

    /* 9. A device-readable buffer after a device-writable one (2.7.4.2). */
    prep();
    put_desc(10, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 11);
    put_desc(11, (uintptr_t)data, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 13);
    put_desc(13, (uintptr_t)data + 512, 512, VRING_DESC_F_NEXT, 12);
    put_desc(12, (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0);
    expect_unused("readable-after-writable", 10);

    /* 10. avail.idx jumps by more than the queue size: the queue is corrupt, so the device must
     *     set DEVICE_NEEDS_RESET; a reset brings it back. */
    q.avail_idx = (uint16_t)(q.avail_idx + n + 7);
    *(volatile uint16_t *)&q.avail->idx = q.avail_idx;
    vq_kick(&q);
    expect_needs_reset("avail-idx-jump");

    /* 11. Queue sizes that are not a power of two (and one above the maximum): DRIVER_OK must
     *     lead to DEVICE_NEEDS_RESET. */
    {
        static const uint16_t sizes[] = { 100, 3, 512 };
        static const char *const names[] = { "queue-size-not-pow2", "queue-size-3", "queue-size-above-max" };
        for (int i = 0; i < 3; i++) {
            if (!vdev_negotiate(&dev, VIRTIO_F_VERSION_1) || vq_setup(&dev, &q, 0, sizes[i], 0, 1)) {
                line(names[i], 0, "setup failed", ~0ull);
                continue;
            }
            vdev_driver_ok(&dev);
            expect_needs_reset(names[i]);
        }
    }

    /* 12. Rings outside guest RAM. */
    if (vdev_negotiate(&dev, VIRTIO_F_VERSION_1) && vq_setup(&dev, &q, 0, 0, 0, 0) == 0) {
        vcommon_w32(&dev, VCOMMON_Q_DESCLO, 0);
        vcommon_w32(&dev, VCOMMON_Q_DESCHI, (uint32_t)(FAR_AWAY >> 32));
        vcommon_w16(&dev, VCOMMON_Q_ENABLE, 1);
        vdev_driver_ok(&dev);
        expect_needs_reset("ring-outside-ram");
    } else line("ring-outside-ram", 0, "setup failed", ~0ull);

    /* 13. Notifying a queue that is not enabled (and one that does not exist, and the doorbell
     *     with a garbage value): nothing may be processed, nothing may break. */
    if (vdev_negotiate(&dev, VIRTIO_F_VERSION_1) && vq_setup(&dev, &q, 0, 0, 0, 0) == 0) {
        uint8_t s = vdev_driver_ok(&dev);
        prep();
        put_desc(0, (uintptr_t)&hdr, sizeof hdr, VRING_DESC_F_NEXT, 1);
        put_desc(1, (uintptr_t)data, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
        put_desc(2, (uintptr_t)&status, 1, VRING_DESC_F_WRITE, 0);
        vq_publish(&q, 0);
        vq_kick(&q);
        *(volatile uint16_t *)(dev.notify + dev.notify_mult) = 1;      /* queue 1: does not exist */
        *(volatile uint16_t *)(dev.notify + 0x400) = 0xFFFF;            /* far past the notify area */
        *q.doorbell = 0xBEEF;
        vcommon_w16(&dev, VCOMMON_Q_SELECT, 9);                         /* out-of-range select */
        vcommon_w16(&dev, VCOMMON_Q_ENABLE, 1);
        uint16_t qs = vcommon_r16(&dev, VCOMMON_Q_SIZE);
        uint32_t id, len;
        int got = vq_wait_used(&q, &id, &len, 300) == 0;
        int back = recover() == 0;
        line("notify-disabled-queue", !got && back && qs == 0 && (s & VIRTIO_STATUS_DRIVER_OK),
             got ? "a disabled queue was processed" : back ? "nothing processed; reset, then a normal request ok"
                                                       : "device did not come back", ~0ull);
    } else line("notify-disabled-queue", 0, "setup failed", ~0ull);

    if (sane()) { serial_puts("FAIL device does not answer at the end\n"); return 1; }
    if (failures) {
        serial_puts("FAIL ");
        serial_putu((uint64_t)failures);
        serial_puts(" attack(s) misbehaved\n");
        return 1;
    }
    serial_puts("SUCCESS\n");
    return 0;
}
