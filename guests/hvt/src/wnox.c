/* wnox: write to our own text, which the tender must map read-only. */
#include "hvt_guest.h"

HVT_MANIFEST();

__attribute__((noinline)) static int victim(void)
{
    return 42;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uintptr_t addr = (uintptr_t)&victim;
    __asm__("" : "+r"(addr));
    printf("writing to text at 0x%lx\n", (unsigned long)addr);
    *(volatile uint8_t *)addr = 0xc3;
    printf("victim()=%d\n", victim());
    puts("WNOX FAIL");
    return 1;
}
