/*
 * blkbad: block read into a buffer outside guest memory. The tender must
 * refuse (end the run with exit status 1). If the call returns, we print
 * "BLKBAD FAIL" and exit 0 so a test can tell the difference.
 */
#include "hvt_guest.h"

HVT_MANIFEST(HVT_MFT_BLOCK("storage"));

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint64_t h;
    const struct mft_entry *e = hvt_mft_find("storage", MFT_DEV_BLOCK_BASIC, &h);
    if (e == NULL || !e->attached) {
        puts("FAIL: block device 'storage' missing or not attached");
        return 2;
    }
    unsigned bs = e->u.block_basic.block_size;
    uint64_t bad = hvt_bi->mem_size + 4096;
    printf("block read of %u bytes to 0x%lx (mem_size=%lu)\n", bs, bad,
           hvt_bi->mem_size);
    int ret = block_read(h, 0, (void *)(uintptr_t)bad, bs);
    printf("block_read returned %d\n", ret);
    puts("BLKBAD FAIL");
    return 0;
}
