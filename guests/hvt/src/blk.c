/*
 * blk: exercises block device "storage".
 * Needs a backing file of at least 8 sectors. Writes a (per-run) pattern to
 * sectors 0..7 one sector per call, reads them back and compares; then
 * checks that out-of-range and unaligned requests fail with EINVAL.
 *   blk ro   for a read-only device: sector 0 reads, a write to it must fail
 *            (prints "blk: write refused (ret N)"), and sector 0 reads back
 *            unchanged; SUCCESS, exit 0. A write that succeeds: FAIL, exit 1.
 *   blk journal N   power-cut check (bench/power-cut): N records, one block each, to blocks
 *            1, 2, ... (wrapping), printing "durable I" after write I returns (Solo5 has no
 *            flush: a completed write is on disk). The record is the PVH blk guest's.
 */
#include "hvt_guest.h"

HVT_MANIFEST(HVT_MFT_BLOCK("storage"));

#define NSECTORS 8
#define MAX_BLOCK_SIZE 4096

static uint8_t wbuf[MAX_BLOCK_SIZE] __attribute__((aligned(64)));
static uint8_t rbuf[MAX_BLOCK_SIZE] __attribute__((aligned(64)));

static void fill(uint8_t *buf, size_t len, unsigned sector, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((seed >> (8 * (i % 4))) + sector * 31u + i * 7u);
}

static int fail(const char *what, unsigned sector, int ret)
{
    printf("FAIL: %s (sector %u, ret %d)\n", what, sector, ret);
    return 1;
}

static int read_only_checks(uint64_t h, unsigned bs)
{
    int ret = block_read(h, 0, rbuf, bs);
    if (ret != SOLO5_R_OK)
        return fail("read of sector 0", 0, ret);
    memcpy(wbuf, rbuf, bs);
    for (unsigned i = 0; i < bs; i++)
        wbuf[i] ^= 0xff;
    ret = block_write(h, 0, wbuf, bs);
    if (ret == SOLO5_R_OK)
        return fail("write to a read-only device succeeded", 0, ret);
    printf("blk: write refused (ret %d)\n", ret);
    memset(wbuf, 0, bs);
    ret = block_read(h, 0, wbuf, bs);
    if (ret != SOLO5_R_OK || memcmp(wbuf, rbuf, bs) != 0)
        return fail("sector 0 changed or unreadable after the refused write", 0, ret);
    puts("SUCCESS");
    return 0;
}

/* Record I in a block: "SWJ1", I (little-endian u64), then bytes that depend on I and their
 * position (bench/power-cut checks the first 512). */
static void journal_record(uint8_t *block, unsigned bs, uint64_t i)
{
    memcpy(block, "SWJ1", 4);
    for (int b = 0; b < 8; b++)
        block[4 + b] = (uint8_t)(i >> (8 * b));
    for (unsigned j = 12; j < bs; j++)
        block[j] = (uint8_t)(i * 131 + j * 7);
}

static int journal(uint64_t h, uint64_t capacity, unsigned bs, const char *count)
{
    uint64_t n = 0;
    for (const char *c = count; *c >= '0' && *c <= '9'; c++)
        n = n * 10 + (uint64_t)(*c - '0');
    uint64_t slots = capacity / bs - 1;  /* block 0 is left alone */
    for (uint64_t i = 0; i < n; i++) {
        journal_record(wbuf, bs, i);
        int ret = block_write(h, (1 + i % slots) * bs, wbuf, bs);
        if (ret != SOLO5_R_OK)
            return fail("journal write", (unsigned)(1 + i % slots), ret);
        printf("durable %lu\n", i);
    }
    puts("SUCCESS");
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t h;
    const struct mft_entry *e = hvt_mft_find("storage", MFT_DEV_BLOCK_BASIC, &h);
    if (e == NULL) {
        puts("FAIL: block device 'storage' not in boot manifest");
        return 1;
    }
    if (!e->attached) {
        puts("FAIL: block device 'storage' not attached");
        return 1;
    }
    uint64_t capacity = e->u.block_basic.capacity;
    unsigned bs = e->u.block_basic.block_size;
    printf("capacity=%lu block_size=%u\n", capacity, bs);
    if (bs == 0 || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) != 0) {
        puts("FAIL: unsupported block size");
        return 1;
    }
    if (capacity < (uint64_t)NSECTORS * bs) {
        printf("FAIL: capacity too small, need at least %u bytes\n",
               NSECTORS * bs);
        return 1;
    }

    if (argc > 1 && strcmp(argv[1], "ro") == 0)
        return read_only_checks(h, bs);
    if (argc > 2 && strcmp(argv[1], "journal") == 0)
        return journal(h, capacity, bs, argv[2]);

    uint32_t seed = (uint32_t)(walltime() ^ rdtsc());
    int ret;
    for (unsigned s = 0; s < NSECTORS; s++) {
        fill(wbuf, bs, s, seed);
        ret = block_write(h, (uint64_t)s * bs, wbuf, bs);
        if (ret != SOLO5_R_OK)
            return fail("write", s, ret);
    }
    for (unsigned s = 0; s < NSECTORS; s++) {
        memset(rbuf, 0xee, bs);
        ret = block_read(h, (uint64_t)s * bs, rbuf, bs);
        if (ret != SOLO5_R_OK)
            return fail("read", s, ret);
        fill(wbuf, bs, s, seed);
        if (memcmp(wbuf, rbuf, bs) != 0)
            return fail("data mismatch", s, ret);
    }
    puts("write/read back of 8 sectors ok");

    /* One past the end. */
    ret = block_read(h, capacity, rbuf, bs);
    if (ret != SOLO5_R_EINVAL)
        return fail("read at capacity should be EINVAL", (unsigned)(capacity / bs), ret);
    ret = block_write(h, capacity, wbuf, bs);
    if (ret != SOLO5_R_EINVAL)
        return fail("write at capacity should be EINVAL", (unsigned)(capacity / bs), ret);
    /* Last sector is fine. */
    ret = block_read(h, capacity - bs, rbuf, bs);
    if (ret != SOLO5_R_OK)
        return fail("read of last sector", (unsigned)(capacity / bs) - 1, ret);
    puts("end of device checks ok");

    /* Unaligned offsets inside the device: the tender checks bounds only
     * (sector alignment is the bindings' rule), as solo5-hvt v0.12.1. */
    ret = block_read(h, 1, rbuf, bs);
    if (ret != SOLO5_R_OK)
        return fail("unaligned read (offset 1) inside the device should be OK", 0, ret);
    ret = block_read(h, capacity - bs / 2, rbuf, bs);
    if (ret != SOLO5_R_EINVAL)
        return fail("read straddling the end should be EINVAL", 0, ret);
    puts("unaligned checks ok");

    puts("SUCCESS");
    return 0;
}
