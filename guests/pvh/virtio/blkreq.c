#include "blkreq.h"

uint64_t blk_open(struct vdev *d, struct vq *q, uint64_t extra)
{
    if (vdev_find(VIRTIO_DEV_BLK, 0, d)) { serial_puts("blk: no virtio-blk device\n"); return 0; }
    uint64_t f = vdev_negotiate(d, VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO | extra);
    if (!f) return 0;
    if (vq_setup(d, q, 0, 0, 0, 1)) return 0;
    uint8_t s = vdev_driver_ok(d);
    if (!(s & VIRTIO_STATUS_DRIVER_OK) || (s & VIRTIO_STATUS_NEEDS_RESET)) {
        serial_puts("blk: DRIVER_OK not accepted, status=");
        serial_puthex(s);
        serial_puts("\n");
        return 0;
    }
    return f;
}

static struct blk_hdr hdr __attribute__((aligned(16)));
static volatile uint8_t status;

int blk_request(struct vq *q, uint32_t type, uint64_t sector, const struct vbuf *data, int n, uint32_t *used_len)
{
    struct vbuf b[VQ_MAX];
    if (n + 2 > VQ_MAX || n + 2 > q->size) return -1;
    hdr.type = type; hdr.reserved = 0; hdr.sector = sector;
    status = 0xFF;
    b[0] = (struct vbuf){ &hdr, sizeof hdr, 0 };
    for (int i = 0; i < n; i++) b[i + 1] = data[i];
    b[n + 1] = (struct vbuf){ (void *)&status, 1, 1 };
    uint32_t len = 0;
    if (vq_transfer(q, b, n + 2, &len, 5000)) return -1;
    if (used_len) *used_len = len;
    return status;
}
