/* See virtio.h. */
#include "virtio.h"

void *memset(void *p, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
/* gcc may emit calls to these for struct copies and large initialisers. */
void *memset(void *p, int c, size_t n) { return vmemset(p, c, n); }
void *memcpy(void *d, const void *s, size_t n) { return vmemcpy(d, s, n); }

void *vmemset(void *p, int c, size_t n)
{
    uint8_t *b = p;
    while (n && ((uintptr_t)b & 7)) { *b++ = (uint8_t)c; n--; }
    uint64_t w = 0x0101010101010101ull * (uint8_t)c;
    for (; n >= 8; n -= 8, b += 8) *(volatile uint64_t *)b = w;
    while (n--) *b++ = (uint8_t)c;
    return p;
}

void *vmemcpy(void *d, const void *s, size_t n)
{
    uint8_t *o = d; const uint8_t *i = s;
    if ((((uintptr_t)o | (uintptr_t)i) & 7) == 0)
        for (; n >= 8; n -= 8, o += 8, i += 8) *(volatile uint64_t *)o = *(const uint64_t *)i;
    while (n--) *o++ = *i++;
    return d;
}

int vstreq(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

int next_word(const char **p, char *out, int n)
{
    const char *s = *p;
    while (*s == ' ') s++;
    int k = 0;
    while (*s && *s != ' ') { if (k < n - 1) out[k++] = *s; s++; }
    out[k] = 0;
    *p = s;
    return k;
}

uint64_t parse_size(const char *s)
{
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
    if (*s == 'k' || *s == 'K') v <<= 10;
    else if (*s == 'm' || *s == 'M') v <<= 20;
    return v;
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

uint64_t tsc_per_ms(void)
{
    static uint64_t cached;
    if (cached) return cached;
    uint32_t a, b, c, d;
    cpuid(0, &a, &b, &c, &d);
    uint32_t max = a;
    if (max >= 0x15) {
        cpuid(0x15, &a, &b, &c, &d);
        if (a && b && c) cached = (uint64_t)c * b / a / 1000;
    }
    if (!cached && max >= 0x16) {
        cpuid(0x16, &a, &b, &c, &d);
        if (a & 0xFFFF) cached = (uint64_t)(a & 0xFFFF) * 1000;
    }
    if (!cached) cached = 1000000; /* 1 GHz: only used for timeouts */
    return cached;
}

/* ---- PCI configuration mechanism #1 ---- */
static uint32_t cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)(dev & 31) << 11 | (uint32_t)(fn & 7) << 8 | (off & 0xFC);
}
uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    outl(0xCF8, cfg_addr(bus, dev, fn, off));
    return inl(0xCFC);
}
void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
    outl(0xCF8, cfg_addr(bus, dev, fn, off));
    outl(0xCFC, v);
}
uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    return (uint8_t)(pci_read32(bus, dev, fn, off) >> (8 * (off & 3)));
}

/* ---- common configuration ---- */
void vcommon_w16(struct vdev *d, uint32_t off, uint16_t v) { *(volatile uint16_t *)(d->common + off) = v; }
void vcommon_w32(struct vdev *d, uint32_t off, uint32_t v) { *(volatile uint32_t *)(d->common + off) = v; }
uint16_t vcommon_r16(struct vdev *d, uint32_t off) { return *(volatile uint16_t *)(d->common + off); }
uint32_t vcommon_r32(struct vdev *d, uint32_t off) { return *(volatile uint32_t *)(d->common + off); }
uint8_t vdev_status(struct vdev *d) { return *(volatile uint8_t *)(d->common + VCOMMON_STATUS); }
void vdev_set_status(struct vdev *d, uint8_t s) { *(volatile uint8_t *)(d->common + VCOMMON_STATUS) = s; }

int vdev_find(uint16_t device_id, int nth, struct vdev *d)
{
    vmemset(d, 0, sizeof *d);
    for (uint8_t dev = 0; dev < 32; dev++) {
        uint32_t id = pci_read32(0, dev, 0, 0);
        if ((id & 0xFFFF) != 0x1AF4 || (id >> 16) != device_id) continue;
        if (nth-- > 0) continue;
        d->bus = 0; d->dev = dev; d->fn = 0; d->device_id = device_id;
        uint32_t bar = pci_read32(0, dev, 0, 0x10);
        if (bar & 1) { serial_puts("virtio: BAR0 is not a memory BAR\n"); return -1; }
        uint64_t base = bar & ~0xFull;
        if ((bar & 6) == 4) base |= (uint64_t)pci_read32(0, dev, 0, 0x14) << 32;
        if (!base) { serial_puts("virtio: BAR0 is not assigned\n"); return -1; }
        d->bar0 = base;
        /* Memory space + bus master on; INTx off (bit 10): we poll. */
        uint32_t cmd = pci_read32(0, dev, 0, 0x04);
        pci_write32(0, dev, 0, 0x04, (cmd & 0xFFFF) | 0x6 | 0x400);
        if (!(pci_read32(0, dev, 0, 0x04) >> 16 & 0x10)) { serial_puts("virtio: no capability list\n"); return -1; }
        uint8_t ptr = pci_read8(0, dev, 0, 0x34) & 0xFC;
        for (int guard = 0; ptr && guard < 48; guard++) {
            uint8_t cap_id = pci_read8(0, dev, 0, ptr);
            uint8_t next = pci_read8(0, dev, 0, ptr + 1);
            if (cap_id == 0x09) {
                uint8_t type = pci_read8(0, dev, 0, ptr + 3);
                uint8_t barno = pci_read8(0, dev, 0, ptr + 4);
                uint32_t off = pci_read32(0, dev, 0, ptr + 8);
                uint32_t len = pci_read32(0, dev, 0, ptr + 12);
                volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)(base + off);
                if (barno == 0) {
                    switch (type) {
                    case 1: if (!d->common) d->common = p; break;
                    case 2:
                        if (!d->notify) {
                            d->notify = p; d->notify_len = len;
                            d->notify_mult = pci_read32(0, dev, 0, ptr + 16);
                        }
                        break;
                    case 3: if (!d->isr) d->isr = p; break;
                    case 4: if (!d->devcfg) { d->devcfg = p; d->devcfg_len = len; } break;
                    }
                }
            }
            ptr = next & 0xFC;
        }
        if (!d->common || !d->notify || !d->isr) {
            serial_puts("virtio: missing common/notify/isr capability\n");
            return -1;
        }
        return 0;
    }
    return -1;
}

int vdev_reset(struct vdev *d)
{
    vdev_set_status(d, 0);
    uint64_t end = rdtsc() + 1000 * tsc_per_ms();
    while (vdev_status(d) != 0)
        if (rdtsc() > end) { serial_puts("virtio: reset did not complete\n"); return -1; }
    return 0;
}

uint64_t vdev_negotiate(struct vdev *d, uint64_t wanted)
{
    if (vdev_reset(d)) return 0;
    vdev_set_status(d, VIRTIO_STATUS_ACK);
    vdev_set_status(d, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    vcommon_w32(d, VCOMMON_DFSELECT, 0);
    uint64_t offered = vcommon_r32(d, VCOMMON_DF);
    vcommon_w32(d, VCOMMON_DFSELECT, 1);
    offered |= (uint64_t)vcommon_r32(d, VCOMMON_DF) << 32;
    if (!(offered & VIRTIO_F_VERSION_1)) { serial_puts("virtio: VERSION_1 not offered\n"); return 0; }
    uint64_t features = (wanted | VIRTIO_F_VERSION_1) & offered;
    vcommon_w32(d, VCOMMON_GFSELECT, 0);
    vcommon_w32(d, VCOMMON_GF, (uint32_t)features);
    vcommon_w32(d, VCOMMON_GFSELECT, 1);
    vcommon_w32(d, VCOMMON_GF, (uint32_t)(features >> 32));
    vdev_set_status(d, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(vdev_status(d) & VIRTIO_STATUS_FEATURES_OK)) {
        serial_puts("virtio: FEATURES_OK refused\n");
        vdev_set_status(d, VIRTIO_STATUS_FAILED);
        return 0;
    }
    return features;
}

uint8_t vdev_driver_ok(struct vdev *d)
{
    vdev_set_status(d, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    return vdev_status(d);
}

/* ---- rings ---- */
struct ring_mem {
    struct vring_desc desc[VQ_MAX] __attribute__((aligned(4096)));
    struct vring_avail avail __attribute__((aligned(4096)));
    struct vring_used used __attribute__((aligned(4096)));
};
static struct ring_mem rings[2];

int vq_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t size, int slot, int enable)
{
    if (slot < 0 || slot > 1) return -1;
    vcommon_w16(d, VCOMMON_Q_SELECT, index);
    uint16_t max = vcommon_r16(d, VCOMMON_Q_SIZE);
    if (max == 0) { serial_puts("virtio: queue not available\n"); return -1; }
    if (size == 0) size = max < VQ_MAX ? max : VQ_MAX;
    struct ring_mem *m = &rings[slot];
    vmemset(m, 0, sizeof *m);
    q->dev = d; q->index = index; q->size = size;
    q->avail_idx = 0; q->last_used = 0;
    q->desc = m->desc; q->avail = &m->avail; q->used = &m->used;
    uint16_t noff = vcommon_r16(d, VCOMMON_Q_NOFF);
    q->doorbell = (volatile uint16_t *)(d->notify + (uint32_t)noff * d->notify_mult);
    vcommon_w16(d, VCOMMON_Q_SIZE, size);
    vcommon_w16(d, VCOMMON_Q_MSIX, 0xFFFF);
    uint64_t da = (uintptr_t)q->desc, aa = (uintptr_t)q->avail, ua = (uintptr_t)q->used;
    vcommon_w32(d, VCOMMON_Q_DESCLO, (uint32_t)da); vcommon_w32(d, VCOMMON_Q_DESCHI, (uint32_t)(da >> 32));
    vcommon_w32(d, VCOMMON_Q_AVAILLO, (uint32_t)aa); vcommon_w32(d, VCOMMON_Q_AVAILHI, (uint32_t)(aa >> 32));
    vcommon_w32(d, VCOMMON_Q_USEDLO, (uint32_t)ua); vcommon_w32(d, VCOMMON_Q_USEDHI, (uint32_t)(ua >> 32));
    if (enable) vcommon_w16(d, VCOMMON_Q_ENABLE, 1);
    return 0;
}

void vq_kick(struct vq *q)
{
    mb();
    *q->doorbell = q->index;
}

void vq_publish(struct vq *q, uint16_t head)
{
    q->avail->ring[q->avail_idx & (q->size - 1)] = head;
    barrier();                       /* x86: stores are ordered; keep the compiler honest */
    q->avail_idx++;
    *(volatile uint16_t *)&q->avail->idx = q->avail_idx;
}

int vq_poll_used(struct vq *q, uint32_t *id, uint32_t *len)
{
    uint16_t idx = *(volatile uint16_t *)&q->used->idx;
    if (idx == q->last_used) return 0;
    barrier();
    volatile struct vring_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
    *id = e->id;
    *len = e->len;
    q->last_used++;
    return 1;
}

int vq_wait_used(struct vq *q, uint32_t *id, uint32_t *len, uint64_t timeout_ms)
{
    uint64_t end = rdtsc() + timeout_ms * tsc_per_ms();
    for (;;) {
        if (vq_poll_used(q, id, len)) return 0;
        if (rdtsc() > end) return -1;
        __asm__ volatile("pause");
    }
}

int vq_transfer(struct vq *q, const struct vbuf *bufs, int n, uint32_t *used_len, uint64_t timeout_ms)
{
    for (int i = 0; i < n; i++) {
        q->desc[i].addr = (uintptr_t)bufs[i].addr;
        q->desc[i].len = bufs[i].len;
        q->desc[i].flags = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        q->desc[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
    }
    vq_publish(q, 0);
    vq_kick(q);
    uint32_t id, len;
    if (vq_wait_used(q, &id, &len, timeout_ms)) return -1;
    if (used_len) *used_len = len;
    return id == 0 ? 0 : -1;
}
