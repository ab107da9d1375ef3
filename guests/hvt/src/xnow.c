/* xnow: execute from writable data, which the tender must map NX. */
#include "hvt_guest.h"

HVT_MANIFEST();

static uint8_t code[64] __attribute__((aligned(16)));

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    code[0] = 0xc3;                             /* ret */
    uintptr_t addr = (uintptr_t)code;
    __asm__("" : "+r"(addr) : : "memory");
    printf("calling data at 0x%lx\n", (unsigned long)addr);
    ((void (*)(void))addr)();
    puts("XNOW FAIL");
    return 1;
}
