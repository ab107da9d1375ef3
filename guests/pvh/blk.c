/* blk: exercises virtio-blk through the guests/pvh/virtio driver. The kernel command line picks
 * the mode:
 *   (empty)     capacity; write a pattern to sectors 1..8 in one multi-descriptor request; FLUSH;
 *               read it back and compare; GET_ID; an out-of-range read must fail with IOERR.
 *   ro          read-only disk: RO offered, the write fails with IOERR, reads still work.
 *   bench RW BS TOTAL QD   throughput run: RW is read, write, randread or randwrite; prints
 *               "BENCH START" and "BENCH END ..." so the host can time the I/O.
 *   journal N [K|noflush]   power-cut check (bench/power-cut): N one-sector records
 *               (journal_record below) to sectors 1, 2, ... (wrapping); after every K of them
 *               (default 1) a FLUSH, then a "durable I" line for each; with noflush there is no
 *               FLUSH and each record's line, printed once its write completed, is "written I".
 * Prints SUCCESS and exits 0, or a FAIL line and exits 1. */
#include "virtio/blkreq.h"

static struct vdev dev;
static struct vq q;
static uint8_t buf[8 * 512] __attribute__((aligned(4096)));
static uint8_t idbuf[20];

/* The pattern byte at absolute disk offset o (the integration test computes the same). */
static uint8_t pat(uint64_t o) { return (uint8_t)((o & 0xFF) ^ ((o >> 9) * 0x1F) ^ 0xA5); }

static int fail(const char *what, int64_t v)
{
    serial_puts("FAIL ");
    serial_puts(what);
    serial_puts(" (");
    serial_puthex((uint64_t)v);
    serial_puts(")\n");
    return 1;
}

static void fill_pattern(void)
{
    for (uint32_t i = 0; i < sizeof buf; i++) buf[i] = pat(512 + i);
}

/* Writes the pattern to sectors 1..8: header, 8 one-sector data descriptors, status. */
static int write_pattern(void)
{
    fill_pattern();
    struct vbuf data[8];
    for (int i = 0; i < 8; i++) data[i] = (struct vbuf){ buf + 512 * i, 512, 0 };
    uint32_t len = 0;
    return blk_request(&q, VIRTIO_BLK_T_OUT, 1, data, 8, &len);
}

static int flush(void)
{
    uint32_t len = 0;
    return blk_request(&q, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &len);
}

/* Reads sectors 1..8 into buf with two 2 KiB descriptors; returns the status, checks used len. */
static int read_back(uint32_t *len)
{
    vmemset(buf, 0, sizeof buf);
    struct vbuf data[2] = { { buf, 2048, 1 }, { buf + 2048, 2048, 1 } };
    return blk_request(&q, VIRTIO_BLK_T_IN, 1, data, 2, len);
}

static int bench(const char *args, uint64_t capacity);
static int journal(const char *args, uint64_t capacity);

int guest_main(struct hvm_start_info *si)
{
    const char *cmdline = si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
    const char *p = cmdline;
    char mode[16];
    next_word(&p, mode, sizeof mode);
    uint64_t f = blk_open(&dev, &q, 0);
    if (!f) return fail("setup", 0);
    uint64_t capacity = vcfg64(&dev, 0);
    serial_puts("blk: capacity=");
    serial_putu(capacity);
    serial_puts(" sectors, queue size=");
    serial_putu(q.size);
    serial_puts(", features=");
    serial_puthex(f);
    serial_puts("\n");
    if (capacity < 16) return fail("capacity too small", (int64_t)capacity);

    if (vstreq(mode, "bench")) return bench(p, capacity);
    if (vstreq(mode, "journal")) return journal(p, capacity);

    if (vstreq(mode, "ro")) {
        if (!(f & VIRTIO_BLK_F_RO)) return fail("RO feature not offered for a read-only disk", (int64_t)f);
        int s = write_pattern();
        if (s != VIRTIO_BLK_S_IOERR) return fail("write to a read-only disk: expected IOERR", s);
        serial_puts("blk: write refused with IOERR\n");
        uint32_t len = 0;
        s = read_back(&len);
        if (s != VIRTIO_BLK_S_OK) return fail("read on a read-only disk", s);
        if (len != sizeof buf + 1) return fail("read used length", len);
        serial_puts("blk: read ok\n");
        serial_puts("SUCCESS\n");
        return 0;
    }

    if (f & VIRTIO_BLK_F_RO) return fail("writable disk offers RO", (int64_t)f);
    int s = write_pattern();
    if (s != VIRTIO_BLK_S_OK) return fail("write sectors 1..8", s);
    serial_puts("blk: wrote sectors 1..8 (10 descriptors)\n");
    s = flush();
    if (s != VIRTIO_BLK_S_OK) return fail("flush", s);
    serial_puts("blk: flushed\n");

    uint32_t len = 0;
    s = read_back(&len);
    if (s != VIRTIO_BLK_S_OK) return fail("read back", s);
    if (len != sizeof buf + 1) return fail("read used length", len);
    for (uint32_t i = 0; i < sizeof buf; i++)
        if (buf[i] != pat(512 + i)) return fail("read back differs at byte", i);
    serial_puts("blk: read back matches\n");

    vmemset(idbuf, 0xEE, sizeof idbuf);
    struct vbuf idv = { idbuf, sizeof idbuf, 1 };
    s = blk_request(&q, VIRTIO_BLK_T_GET_ID, 0, &idv, 1, &len);
    if (s != VIRTIO_BLK_S_OK) return fail("GET_ID", s);
    if (len != sizeof idbuf + 1) return fail("GET_ID used length", len);
    serial_puts("blk: id=\"");
    for (int i = 0; i < 20 && idbuf[i]; i++) serial_putc(idbuf[i] >= 32 && idbuf[i] < 127 ? (char)idbuf[i] : '?');
    serial_puts("\"\n");
    for (int i = 0; i < 20; i++) if (idbuf[i] == 0xEE) return fail("GET_ID left bytes unwritten", i);

    struct vbuf one = { buf, 512, 1 };
    s = blk_request(&q, VIRTIO_BLK_T_IN, capacity, &one, 1, &len);
    if (s != VIRTIO_BLK_S_IOERR) return fail("read at sector=capacity: expected IOERR", s);
    struct vbuf two = { buf, 1024, 1 };
    s = blk_request(&q, VIRTIO_BLK_T_IN, capacity - 1, &two, 1, &len);
    if (s != VIRTIO_BLK_S_IOERR) return fail("read across the end: expected IOERR", s);
    s = blk_request(&q, VIRTIO_BLK_T_IN, ~0ull, &one, 1, &len);
    if (s != VIRTIO_BLK_S_IOERR) return fail("read at sector 2^64-1: expected IOERR", s);
    serial_puts("blk: out-of-range reads fail with IOERR\n");

    uint8_t st = vdev_status(&dev);
    if (st & VIRTIO_STATUS_NEEDS_RESET) return fail("device needs reset", st);
    serial_puts("SUCCESS\n");
    return 0;
}

/* ---- throughput mode ---- */
#define BENCH_BUF (2u << 20)
#define BENCH_QD 64
static uint8_t bench_buf[BENCH_BUF] __attribute__((aligned(4096)));
static struct blk_hdr bench_hdr[BENCH_QD] __attribute__((aligned(16)));
static volatile uint8_t bench_status[BENCH_QD];

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t xorshift(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

static int bench(const char *args, uint64_t capacity)
{
    char w[16];
    next_word(&args, w, sizeof w);
    int write = vstreq(w, "write") || vstreq(w, "randwrite");
    int rnd = vstreq(w, "randread") || vstreq(w, "randwrite");
    if (!write && !rnd && !vstreq(w, "read")) return fail("bench: RW must be read, write, randread or randwrite", 0);
    next_word(&args, w, sizeof w);
    uint64_t bs = parse_size(w);
    next_word(&args, w, sizeof w);
    uint64_t total = parse_size(w);
    next_word(&args, w, sizeof w);
    uint64_t qd = parse_size(w);
    if (!qd) qd = 1;
    if (qd > BENCH_QD) qd = BENCH_QD;
    if (qd * 3 > q.size) qd = q.size / 3;
    if (!bs || bs % 512 || bs * qd > BENCH_BUF) return fail("bench: BS must be a multiple of 512 with BS*QD <= 2M", (int64_t)bs);
    uint64_t span = capacity / (bs / 512);           /* blocks on the disk */
    if (!span) return fail("bench: disk smaller than one block", 0);
    uint64_t ops = total / bs;
    if (!ops) ops = 1;
    for (uint32_t i = 0; i < BENCH_BUF; i += 4096) bench_buf[i] = (uint8_t)i;

    uint64_t issued = 0, done = 0, next_block = 0, errors = 0;
    uint16_t fl = write ? 0 : VRING_DESC_F_WRITE;
    for (uint16_t k = 0; k < qd; k++) {
        struct vring_desc *dsc = &q.desc[3 * k];
        dsc[0] = (struct vring_desc){ (uintptr_t)&bench_hdr[k], sizeof bench_hdr[k], VRING_DESC_F_NEXT, (uint16_t)(3 * k + 1) };
        dsc[1] = (struct vring_desc){ (uintptr_t)(bench_buf + k * bs), (uint32_t)bs, (uint16_t)(fl | VRING_DESC_F_NEXT), (uint16_t)(3 * k + 2) };
        dsc[2] = (struct vring_desc){ (uintptr_t)&bench_status[k], 1, VRING_DESC_F_WRITE, 0 };
    }
    serial_puts("BENCH START\n");
    uint64_t t0 = rdtsc();
    /* Prime the queue with up to qd requests, then refill each slot as it completes. */
    for (uint16_t k = 0; k < qd && issued < ops; k++, issued++) {
        uint64_t block = rnd ? xorshift() % span : next_block++ % span;
        bench_hdr[k] = (struct blk_hdr){ write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 0, block * (bs / 512) };
        bench_status[k] = 0xFF;
        vq_publish(&q, (uint16_t)(3 * k));
    }
    vq_kick(&q);
    while (done < ops) {
        uint32_t id, len;
        if (vq_wait_used(&q, &id, &len, 10000)) return fail("bench: request timed out", (int64_t)done);
        int refilled = 0;
        do {
            uint16_t k = (uint16_t)(id / 3);
            if (k >= qd || bench_status[k] != VIRTIO_BLK_S_OK) errors++;
            done++;
            if (issued < ops && k < qd) {
                uint64_t block = rnd ? xorshift() % span : next_block++ % span;
                bench_hdr[k].sector = block * (bs / 512);
                bench_status[k] = 0xFF;
                vq_publish(&q, (uint16_t)(3 * k));
                issued++;
                refilled = 1;
            }
        } while (vq_poll_used(&q, &id, &len));
        if (refilled) vq_kick(&q);
    }
    uint64_t t1 = rdtsc();
    serial_puts("BENCH END ops=");
    serial_putu(done);
    serial_puts(" bytes=");
    serial_putu(done * bs);
    serial_puts(" errors=");
    serial_putu(errors);
    serial_puts(" tsc=");
    serial_putu(t1 - t0);
    serial_puts(" tsc_per_ms=");
    serial_putu(tsc_per_ms());
    serial_puts("\n");
    if (errors) return fail("bench: requests failed", (int64_t)errors);
    serial_puts("SUCCESS\n");
    return 0;
}

/* ---- power-cut journal mode ---- */

/* Record I, as bench/power-cut checks it: "SWJ1", I (little-endian u64), then bytes that depend
 * on I and their position, so a torn or stale sector cannot pass for it. */
static void journal_record(uint8_t *sector, uint64_t i)
{
    sector[0] = 'S'; sector[1] = 'W'; sector[2] = 'J'; sector[3] = '1';
    for (int b = 0; b < 8; b++) sector[4 + b] = (uint8_t)(i >> (8 * b));
    for (uint32_t j = 12; j < 512; j++) sector[j] = (uint8_t)(i * 131 + j * 7);
}

static int journal(const char *args, uint64_t capacity)
{
    char w[16];
    next_word(&args, w, sizeof w);
    uint64_t n = parse_size(w);
    next_word(&args, w, sizeof w);
    int flushing = !vstreq(w, "noflush");
    uint64_t batch = flushing && w[0] ? parse_size(w) : 1;
    if (!batch) return fail("journal: K must be at least 1", 0);
    uint64_t slots = capacity - 1;  /* sector 0 is left alone */
    struct vbuf one = { buf, 512, 0 };
    uint32_t len = 0;
    for (uint64_t i = 0; i < n; i += batch) {
        uint64_t end = i + batch < n ? i + batch : n;
        for (uint64_t r = i; r < end; r++) {
            journal_record(buf, r);
            int s = blk_request(&q, VIRTIO_BLK_T_OUT, 1 + r % slots, &one, 1, &len);
            if (s != VIRTIO_BLK_S_OK) return fail("journal: write", s);
            if (!flushing) {
                serial_puts("written ");
                serial_putu(r);
                serial_puts("\n");
            }
        }
        if (!flushing) continue;
        int s = flush();
        if (s != VIRTIO_BLK_S_OK) return fail("journal: flush", s);
        for (uint64_t r = i; r < end; r++) {
            serial_puts("durable ");
            serial_putu(r);
            serial_puts("\n");
        }
    }
    serial_puts("SUCCESS\n");
    return 0;
}
