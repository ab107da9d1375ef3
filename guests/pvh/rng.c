/* rng: reads 64 bytes from virtio-rng (guests/pvh/virtio driver, polling), checks they are not
 * all equal, prints SUCCESS and exits 0 (else a FAIL line, exit 1). */
#include "virtio/virtio.h"

static struct vdev dev;
static struct vq q;
static uint8_t entropy[64] __attribute__((aligned(64)));

static int fail(const char *what, uint64_t v)
{
    serial_puts("FAIL ");
    serial_puts(what);
    serial_puts(" (");
    serial_puthex(v);
    serial_puts(")\n");
    return 1;
}

int guest_main(struct hvm_start_info *si)
{
    (void)si;
    if (vdev_find(VIRTIO_DEV_RNG, 0, &dev)) return fail("no virtio-rng device", 0);
    if (!vdev_negotiate(&dev, VIRTIO_F_VERSION_1)) return fail("feature negotiation", 0);
    if (vq_setup(&dev, &q, 0, 0, 0, 1)) return fail("queue setup", 0);
    uint8_t s = vdev_driver_ok(&dev);
    if (!(s & VIRTIO_STATUS_DRIVER_OK) || (s & VIRTIO_STATUS_NEEDS_RESET)) return fail("DRIVER_OK", s);
    uint32_t got = 0;
    /* The device may return fewer bytes than asked: ask again for the rest. */
    for (int round = 0; got < sizeof entropy && round < 16; round++) {
        struct vbuf b = { entropy + got, (uint32_t)(sizeof entropy - got), 1 };
        uint32_t len = 0;
        if (vq_transfer(&q, &b, 1, &len, 5000)) return fail("request timed out", got);
        if (len > sizeof entropy - got) return fail("used length larger than the buffer", len);
        got += len;
    }
    if (got != sizeof entropy) return fail("short read", got);
    serial_puts("rng: ");
    for (uint32_t i = 0; i < sizeof entropy; i++) {
        serial_putc("0123456789abcdef"[entropy[i] >> 4]);
        serial_putc("0123456789abcdef"[entropy[i] & 15]);
    }
    serial_puts("\n");
    int same = 1;
    for (uint32_t i = 1; i < sizeof entropy; i++) if (entropy[i] != entropy[0]) same = 0;
    if (same) return fail("all 64 bytes are equal", entropy[0]);
    serial_puts("SUCCESS\n");
    return 0;
}
