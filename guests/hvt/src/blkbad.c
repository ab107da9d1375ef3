/*
 * blkbad: block I/O with a guest buffer outside guest memory. The tender
 * must refuse it by ending the run with exit status 1 (and a message).
 * Variant from argv[1]:
 *   read     (default) block read into mem_size + 4096
 *   write    block write from mem_size + 4096
 *   straddle block read into [mem_size - block_size/2, + block_size)
 *   wrap     block read into 2^64 - 256 (address + length wraps around)
 * If the hypercall returns, prints "BLKBAD FAIL" and exits 0 so a test can
 * tell. Unknown variant or no attached "storage": exit 2.
 */
#include "hvt_guest.h"

HVT_MANIFEST(HVT_MFT_BLOCK("storage"));

int main(int argc, char **argv)
{
    const char *variant = argc > 1 ? argv[1] : "read";
    uint64_t h;
    const struct mft_entry *e = hvt_mft_find("storage", MFT_DEV_BLOCK_BASIC, &h);
    if (e == NULL || !e->attached) {
        puts("FAIL: block device 'storage' missing or not attached");
        return 2;
    }
    unsigned bs = e->u.block_basic.block_size;
    uint64_t mem = hvt_bi->mem_size;
    uint64_t bad;
    int write = 0;
    if (strcmp(variant, "read") == 0) {
        bad = mem + 4096;
    } else if (strcmp(variant, "write") == 0) {
        bad = mem + 4096;
        write = 1;
    } else if (strcmp(variant, "straddle") == 0) {
        bad = mem - bs / 2;
    } else if (strcmp(variant, "wrap") == 0) {
        bad = (uint64_t)0 - 256;
    } else {
        printf("blkbad: unknown variant '%s'\n", variant);
        return 2;
    }
    printf("block %s of %u bytes %s 0x%lx (mem_size=%lu)\n",
           write ? "write" : "read", bs, write ? "from" : "to", bad, mem);
    int ret = write ? block_write(h, 0, (const void *)(uintptr_t)bad, bs)
                    : block_read(h, 0, (void *)(uintptr_t)bad, bs);
    printf("block I/O returned %d\n", ret);
    puts("BLKBAD FAIL");
    return 0;
}
