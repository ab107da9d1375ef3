/*
 * netring.c - net_write/net_read for Swiftlet hvt test guests: through the
 * ABI-2 network ring when the tender offers it and the guest started it,
 * else through the NET_WRITE/NET_READ hypercalls.
 *
 * Our own driver, written from the ring's published description (Solo5
 * v0.12.1, include/hvt_ring.h): the guest produces entries (ent_tail) and
 * consumes commits (com_head); the tender consumes entries (ent_head) and
 * produces commits (com_tail) for reads only. Writes are fire-and-forget
 * from a per-slot buffer; a read waits for its commit. The guest kicks
 * port 0x600 only when the tender said it is about to sleep (needs_kick).
 *
 * Built into an archive so that guests without networking do not carry
 * the 2 MiB of write buffers.
 */
#include "hvt_guest.h"

struct hvt_ring *hvt_net_ring;
static uint32_t next_id;
static uint8_t write_slots[HVT_RING_SIZE][HVT_RING_BUF_SIZE] __attribute__((aligned(64)));

static inline void compiler_barrier(void) { __asm__ __volatile__("" ::: "memory"); }
static inline void full_barrier(void) { __asm__ __volatile__("mfence" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ __volatile__("pause" ::: "memory"); }

int hvt_net_ring_start(void)
{
#if HVT_ABI >= 2
    /* Solo5's bindings take the ring when offered and write nothing back
     * (solo5-hvt maps the boot info read-only): so do we. */
    if (!(hvt_bi->host_features & HVT_FEATURE_RING_IO) || hvt_bi->net_ring == 0)
        return 0;
    hvt_net_ring = (struct hvt_ring *)(uintptr_t)hvt_bi->net_ring;
    return 1;
#else
    return 0;
#endif
}

/* Publish the entry at ent_tail; kick if the tender sleeps. */
static void submit(struct hvt_ring *r)
{
    compiler_barrier();             /* entry contents before the index (x86: TSO) */
    r->ent_tail++;
    full_barrier();                 /* store ent_tail, then load needs_kick */
    if (r->needs_kick)
        hvt_ring_kick();
}

static int hc_net_write(uint64_t handle, const void *buf, size_t len)
{
    volatile struct hvt_hc_net_write a;
    a.handle = handle;
    a.data = (uint64_t)(uintptr_t)buf;
    a.len = len;
    a.ret = -1;
    hvt_do_hypercall(HVT_HYPERCALL_NET_WRITE, &a);
    return a.ret;
}

static int hc_net_read(uint64_t handle, void *buf, size_t size, size_t *read_len)
{
    volatile struct hvt_hc_net_read a;
    a.handle = handle;
    a.data = (uint64_t)(uintptr_t)buf;
    a.len = size;
    a.ret = -1;
    hvt_do_hypercall(HVT_HYPERCALL_NET_READ, &a);
    if (read_len)
        *read_len = (a.ret == SOLO5_R_OK) ? a.len : 0;
    return a.ret;
}

int net_write(uint64_t handle, const void *buf, size_t len)
{
    struct hvt_ring *r = hvt_net_ring;
    if (r == NULL || len > HVT_RING_BUF_SIZE)
        return hc_net_write(handle, buf, len);
    while (r->ent_tail - r->ent_head >= HVT_RING_SIZE - 1)
        cpu_relax();                /* full: the tender frees slots as it sends */
    uint32_t slot = r->ent_tail & HVT_RING_MASK;
    memcpy(write_slots[slot], buf, len);
    struct hvt_ring_entry *e = &r->entries[slot];
    e->operation = HVT_RING_NET_WRITE;
    e->handle = (uint32_t)handle;
    e->data = (uint64_t)(uintptr_t)write_slots[slot];
    e->len = (uint32_t)len;
    e->id = next_id++;
    submit(r);
    return SOLO5_R_OK;
}

int net_read(uint64_t handle, void *buf, size_t size, size_t *read_len)
{
    struct hvt_ring *r = hvt_net_ring;
    if (r == NULL)
        return hc_net_read(handle, buf, size, read_len);
    while (r->ent_tail - r->ent_head >= HVT_RING_SIZE - 1)
        cpu_relax();
    uint32_t slot = r->ent_tail & HVT_RING_MASK;
    struct hvt_ring_entry *e = &r->entries[slot];
    e->operation = HVT_RING_NET_READ;
    e->handle = (uint32_t)handle;
    e->data = (uint64_t)(uintptr_t)buf;
    e->len = (uint32_t)size;
    e->id = next_id++;
    submit(r);
    while (r->com_head == r->com_tail)
        cpu_relax();
    compiler_barrier();             /* commit contents after the index */
    struct hvt_ring_commit *c = &r->commits[r->com_head & HVT_RING_MASK];
    int ret = c->ret;
    if (read_len)
        *read_len = (ret == SOLO5_R_OK) ? c->len : 0;
    r->com_head++;
    return ret;
}
