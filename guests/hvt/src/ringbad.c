/* hvt-abi: 2
 *
 * ringbad: a guest that breaks the ABI-2 network ring on purpose (device
 * "service"). The tender must survive every variant: entries it can refuse
 * one by one are refused (the guest checks and prints "RINGBAD SURVIVED",
 * exit 0); what breaks the ring itself ends the run with exit status 1 and
 * one line. If a fatal variant returns: "RINGBAD FAIL", exit 0.
 * Variant from argv[1]:
 *   oversize  write entries of 4096 and 0 bytes, a write to handle 0 (the
 *             reserved entry), an unknown operation 7, reads from handles 0
 *             and 99: all refused (reads get EINVAL with their id)
 *   index     ent_tail 5000 entries past ent_head           (fatal)
 *   outside   a write whose buffer lies past guest RAM       (fatal)
 *   inring    a read into the ring itself, outside guest RAM (fatal)
 *   commits   1,025 reads whose commits are never consumed   (fatal)
 *   producer  produce valid writes forever, within the ring's flow control
 *             (never ends by itself: the test stops it with a signal)
 * Unknown variant, or no ring on offer: exit 2.
 */
#include "hvt_guest.h"

HVT_MANIFEST(HVT_MFT_NET("service"));

static uint8_t frame[64];
static uint32_t next_id = 1000;

static void submit_raw(struct hvt_ring *r, uint32_t op, uint32_t handle,
                       uint64_t data, uint32_t len)
{
    struct hvt_ring_entry *e = &r->entries[r->ent_tail & HVT_RING_MASK];
    e->operation = op;
    e->handle = handle;
    e->data = data;
    e->len = len;
    e->id = next_id++;
    __asm__ __volatile__("" ::: "memory");
    r->ent_tail++;
    __asm__ __volatile__("mfence" ::: "memory");
    if (r->needs_kick)
        hvt_ring_kick();
}

/* A read through the raw ring; returns the commit's ret, checks its id. */
static int raw_read(struct hvt_ring *r, uint32_t handle)
{
    uint32_t id = next_id;
    submit_raw(r, HVT_RING_NET_READ, handle, (uint64_t)(uintptr_t)frame, sizeof frame);
    while (r->com_head == r->com_tail)
        __asm__ __volatile__("pause" ::: "memory");
    struct hvt_ring_commit *c = &r->commits[r->com_head & HVT_RING_MASK];
    int ret = c->ret;
    if (c->id != id)
        printf("commit id %u, expected %u\n", c->id, id);
    r->com_head++;
    return ret;
}

static void wait_idle(struct hvt_ring *r)
{
    while (r->ent_head != r->ent_tail)
        __asm__ __volatile__("pause" ::: "memory");
}

int main(int argc, char **argv)
{
    const char *v = argc > 1 ? argv[1] : "";
    uint64_t handle;
    if (hvt_mft_find("service", MFT_DEV_NET_BASIC, &handle) == NULL || !hvt_net_ring_start()) {
        puts("ringbad: no network ring on offer");
        return 2;
    }
    struct hvt_ring *r = hvt_net_ring;
    uint64_t buf = (uint64_t)(uintptr_t)frame;
    memset(frame, 0xff, 12);            /* broadcast, from ff:..: harmless */
    frame[12] = 0x88;
    frame[13] = 0xb5;                   /* local experimental ethertype */
    printf("ringbad %s\n", v);

    if (strcmp(v, "oversize") == 0) {
        submit_raw(r, HVT_RING_NET_WRITE, (uint32_t)handle, buf, 4096);
        submit_raw(r, HVT_RING_NET_WRITE, (uint32_t)handle, buf, 0);
        submit_raw(r, HVT_RING_NET_WRITE, 0, buf, 60);
        submit_raw(r, 7, (uint32_t)handle, buf, 60);
        int r0 = raw_read(r, 0), r99 = raw_read(r, 99);
        wait_idle(r);
        printf("read handle 0: ret=%d, handle 99: ret=%d\n", r0, r99);
        if (r0 != SOLO5_R_EINVAL || r99 != SOLO5_R_EINVAL)
            return 1;
        /* The ring still works: a good write and a read (nothing waits: AGAIN). */
        submit_raw(r, HVT_RING_NET_WRITE, (uint32_t)handle, buf, 60);
        int again = raw_read(r, (uint32_t)handle);
        printf("good read: ret=%d\n", again);
        puts("RINGBAD SURVIVED");
        return 0;
    } else if (strcmp(v, "index") == 0) {
        r->ent_tail = r->ent_head + 5000;
        __asm__ __volatile__("mfence" ::: "memory");
        hvt_ring_kick();
    } else if (strcmp(v, "outside") == 0) {
        submit_raw(r, HVT_RING_NET_WRITE, (uint32_t)handle, hvt_bi->mem_size + 4096, 60);
    } else if (strcmp(v, "inring") == 0) {
        submit_raw(r, HVT_RING_NET_READ, (uint32_t)handle, hvt_bi->net_ring + 64, 64);
    } else if (strcmp(v, "commits") == 0) {
        for (int i = 0; i < 1025; i++) {
            while (r->ent_tail - r->ent_head >= HVT_RING_SIZE - 1)
                __asm__ __volatile__("pause" ::: "memory");
            submit_raw(r, HVT_RING_NET_READ, (uint32_t)handle, buf, sizeof frame);
        }
    } else if (strcmp(v, "producer") == 0) {
        puts("producing");
        for (;;) {
            while (r->ent_tail - r->ent_head >= HVT_RING_SIZE - 1)
                __asm__ __volatile__("pause" ::: "memory");
            submit_raw(r, HVT_RING_NET_WRITE, (uint32_t)handle, buf, 60);
        }
    } else {
        return 2;
    }
    /* Give the I/O thread time to see it (generously: on a loaded machine
     * whose KVM emulates guest code it may wait seconds for a CPU), then say
     * we were not stopped. Timed by the wall clock: a poll returns at once
     * when the tap has input (the host's own IPv6 chatter on a new tap), so
     * counting polls could end the wait in milliseconds. */
    uint64_t start = walltime();
    while (walltime() - start < 30000000000ull)
        hvt_poll(100000000ull, NULL);
    puts("RINGBAD FAIL");
    return 0;
}
