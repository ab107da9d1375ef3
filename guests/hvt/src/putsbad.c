/*
 * putsbad: puts hypercall with an invalid buffer. The tender must end the
 * run with exit status 1. Variant from argv[1]:
 *   beyond   (default) data = mem_size + 4096, len = 1 TiB
 *   straddle data = mem_size - 16, len = 64 (starts inside, ends outside)
 *   wrap     data = 1 MiB, len = 2^64 - 1 MiB + 16 (data + len wraps to 16)
 *   huge     data = 1 MiB (valid), len = 2^63
 * If the hypercall returns, prints "PUTSBAD FAIL" and exits 0.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    const char *variant = argc > 1 ? argv[1] : "beyond";
    uint64_t mem = hvt_bi->mem_size;
    uint64_t data, len;
    if (strcmp(variant, "beyond") == 0) {
        data = mem + 4096;
        len = 1ull << 40;
    } else if (strcmp(variant, "straddle") == 0) {
        data = mem - 16;
        len = 64;
    } else if (strcmp(variant, "wrap") == 0) {
        data = 0x100000;
        len = (uint64_t)0 - 0x100000 + 16;
    } else if (strcmp(variant, "huge") == 0) {
        data = 0x100000;
        len = 1ull << 63;
    } else {
        printf("putsbad: unknown variant '%s'\n", variant);
        return 2;
    }
    printf("putsbad %s: data=0x%lx len=0x%lx (mem_size=%lu)\n", variant, data,
           len, mem);
    volatile struct hvt_hc_puts a;
    a.data = data;
    a.len = len;
    hvt_do_hypercall(HVT_HYPERCALL_PUTS, &a);
    puts("");
    puts("PUTSBAD FAIL");
    return 0;
}
