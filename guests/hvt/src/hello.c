/* hello: prints a greeting, its arguments and some boot info; exit 0. */
#include "hvt_guest.h"

/* Only the reserved entry every Solo5 manifest starts with; the tender ignores it. */
HVT_MANIFEST();

static uint64_t bss_probe[512]; /* a page of .bss */
static volatile uint32_t data_probe = 0x5317c0deu;

int main(int argc, char **argv)
{
    puts("Hello, world");
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("arg[%d]=%s\n", i, argv[i]);
    printf("mem_size=%lu\n", hvt_bi->mem_size);
    if (hvt_bi->cpu_cycle_freq > 0)
        puts("tsc_freq_nonzero=1");
    else
        puts("tsc_freq_nonzero=0");

    /* One word per cache line: cheap even where the KVM emulates every guest instruction
     * (kvm_pvm), and a .bss the loader failed to zero is wrong page-wise anyway. */
    int bss_ok = 1;
    for (size_t i = 0; i < 512; i += 8)
        if (((volatile uint64_t *)bss_probe)[i] != 0 || ((volatile uint64_t *)bss_probe)[i + 7] != 0)
            bss_ok = 0;
    printf("bss_zero=%d\n", bss_ok);
    printf("data_ok=%d\n", data_probe == 0x5317c0deu);
    return 0;
}
