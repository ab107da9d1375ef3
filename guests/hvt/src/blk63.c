/*
 * blk63: declares 63 block devices b0..b62. Writes sector 0 of every device
 * with a pattern derived from its index, then reads all of them back (so a
 * tender that maps handles to the wrong backing file is caught).
 */
#include "hvt_guest.h"

#define B(n) HVT_MFT_BLOCK("b" #n)
HVT_MANIFEST(
    B(0),  B(1),  B(2),  B(3),  B(4),  B(5),  B(6),  B(7),  B(8),  B(9),
    B(10), B(11), B(12), B(13), B(14), B(15), B(16), B(17), B(18), B(19),
    B(20), B(21), B(22), B(23), B(24), B(25), B(26), B(27), B(28), B(29),
    B(30), B(31), B(32), B(33), B(34), B(35), B(36), B(37), B(38), B(39),
    B(40), B(41), B(42), B(43), B(44), B(45), B(46), B(47), B(48), B(49),
    B(50), B(51), B(52), B(53), B(54), B(55), B(56), B(57), B(58), B(59),
    B(60), B(61), B(62));
_Static_assert(sizeof(hvt_manifest_note.m.e) / sizeof(struct mft_entry) == 64,
               "63 devices and the reserved entry");

#define NDEV 63
#define MAX_BLOCK_SIZE 4096

static uint8_t buf[MAX_BLOCK_SIZE];
static uint64_t handle[NDEV];
static unsigned bsize[NDEV];

static void fill(unsigned dev, unsigned bs)
{
    for (unsigned i = 0; i < bs; i++)
        buf[i] = (uint8_t)(i == 0 ? dev : dev * 3 + i);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    for (unsigned d = 0; d < NDEV; d++) {
        char name[8];
        snprintf(name, sizeof name, "b%u", d);
        const struct mft_entry *e =
            hvt_mft_find(name, MFT_DEV_BLOCK_BASIC, &handle[d]);
        if (e == NULL || !e->attached) {
            printf("FAIL: %s missing or not attached\n", name);
            return 1;
        }
        bsize[d] = e->u.block_basic.block_size;
        if (bsize[d] == 0 || bsize[d] > MAX_BLOCK_SIZE ||
            e->u.block_basic.capacity < bsize[d]) {
            printf("FAIL: %s: bad geometry (capacity %lu block_size %u)\n",
                   name, e->u.block_basic.capacity, bsize[d]);
            return 1;
        }
        fill(d, bsize[d]);
        int ret = block_write(handle[d], 0, buf, bsize[d]);
        if (ret != SOLO5_R_OK) {
            printf("FAIL: write %s: ret %d\n", name, ret);
            return 1;
        }
    }
    for (unsigned d = 0; d < NDEV; d++) {
        memset(buf, 0xee, sizeof buf);
        int ret = block_read(handle[d], 0, buf, bsize[d]);
        if (ret != SOLO5_R_OK) {
            printf("FAIL: read b%u: ret %d\n", d, ret);
            return 1;
        }
        if (buf[0] != d) {
            printf("FAIL: b%u: sector 0 holds device %u's data\n", d, buf[0]);
            return 1;
        }
        for (unsigned i = 1; i < bsize[d]; i++) {
            if (buf[i] != (uint8_t)(d * 3 + i)) {
                printf("FAIL: b%u: mismatch at byte %u\n", d, i);
                return 1;
            }
        }
    }
    printf("63 devices ok\n");
    puts("SUCCESS");
    return 0;
}
