/*
 * hcbad: hypercalls whose argument block itself is invalid. The tender must
 * end the run with exit status 1 (and a message). Variant from argv[1]:
 *   beyond   (default) WALLTIME with its argument at mem_size + 4096
 *   straddle PUTS with its 16-byte argument at mem_size - 8
 *   badnr    an outl to port 0x500 + 9, which is no hypercall
 *   kick     an outl to the ring's kick port 0x600, without a network
 *            device and so without a ring on offer
 * If the hypercall returns, prints "HCBAD FAIL" and exits 0.
 * Unknown variant: exit 2. "beyond" with mem_size > 4 GiB - 4 KiB (where no
 * 32-bit address lies beyond memory): exit 3.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

static inline void raw_outl(uint16_t port, uint32_t value)
{
    __asm__ __volatile__("outl %0, %1" : : "a"(value), "d"(port) : "memory");
}

int main(int argc, char **argv)
{
    const char *variant = argc > 1 ? argv[1] : "beyond";
    uint64_t mem = hvt_bi->mem_size;
    if (strcmp(variant, "beyond") == 0) {
        if (mem + 4096 > 0xffffffffull) {
            /* Argument addresses are 32 bits: nothing lies beyond memory. */
            puts("hcbad beyond: not applicable with mem_size > 4 GiB - 4 KiB");
            return 3;
        }
        printf("hcbad beyond: WALLTIME argument at 0x%lx (mem_size=%lu)\n",
               mem + 4096, mem);
        raw_outl(HVT_HYPERCALL_PIO(HVT_HYPERCALL_WALLTIME), (uint32_t)(mem + 4096));
    } else if (strcmp(variant, "straddle") == 0) {
        /* The top 8 bytes of memory hold _start's (unused) return slot. */
        printf("hcbad straddle: PUTS argument at 0x%lx (mem_size=%lu)\n",
               mem - 8, mem);
        raw_outl(HVT_HYPERCALL_PIO(HVT_HYPERCALL_PUTS), (uint32_t)(mem - 8));
    } else if (strcmp(variant, "kick") == 0) {
        puts("hcbad kick: outl to port 0x600 without a ring");
        raw_outl(HVT_RING_KICK_PORT, 0);
    } else if (strcmp(variant, "badnr") == 0) {
        static struct hvt_hc_walltime arg;
        printf("hcbad badnr: outl to port 0x%x\n", HVT_HYPERCALL_PIO(9));
        raw_outl(HVT_HYPERCALL_PIO(9), (uint32_t)(uintptr_t)&arg);
    } else {
        printf("hcbad: unknown variant '%s'\n", variant);
        return 2;
    }
    puts("HCBAD FAIL");
    return 0;
}
