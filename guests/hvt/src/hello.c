/* hello: prints a greeting, its arguments and some boot info; exit 0. */
#include "hvt_guest.h"

/* Real Solo5 binaries carry one reserved entry; the tender must ignore it. */
HVT_MANIFEST(HVT_MFT_RESERVED());

static uint8_t bss_probe[4096];
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

    int bss_ok = 1;
    for (size_t i = 0; i < sizeof bss_probe; i++)
        if (((volatile uint8_t *)bss_probe)[i] != 0)
            bss_ok = 0;
    printf("bss_zero=%d\n", bss_ok);
    printf("data_ok=%d\n", data_probe == 0x5317c0deu);
    return 0;
}
