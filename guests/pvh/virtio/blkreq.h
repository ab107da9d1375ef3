/* virtio-blk requests (VIRTIO 1.2 5.2.6) on top of virtio.h. */
#ifndef BLKREQ_H
#define BLKREQ_H
#include "virtio.h"

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_F_RO     (1ull << 5)
#define VIRTIO_BLK_F_FLUSH  (1ull << 9)

struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

/* Opens the first virtio-blk device, negotiates `extra` features (plus VERSION_1, FLUSH, RO), sets up
 * queue 0 and DRIVER_OK. Returns the negotiated features (0 on failure). */
uint64_t blk_open(struct vdev *d, struct vq *q, uint64_t extra);
/* One request: header, `n` data buffers (device-writable for IN and GET_ID), status. Returns the
 * status byte (0xFF untouched, -1 on timeout) and the used length in *used_len. */
int blk_request(struct vq *q, uint32_t type, uint64_t sector, const struct vbuf *data, int n, uint32_t *used_len);
#endif
