/* zeropage: write to address 0, which the tender must map not-present. */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uintptr_t addr = 0;
    __asm__("" : "+r"(addr));   /* hide the null pointer from the optimiser */
    puts("writing to address 0");
    *(volatile uint64_t *)addr = 0x5a5a5a5a5a5a5a5aull;
    puts("ZEROPAGE FAIL");
    return 1;
}
