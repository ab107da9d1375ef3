/*
 * trap: raises a CPU exception chosen by argv[1] to exercise the runtime's
 * IDT and the tender's exception delivery. Independent of the tender's
 * page protections (unlike zeropage/wnox/xnow).
 *   ud2  (default)  #UD  -> trap: vector 6
 *   div0            #DE  -> trap: vector 0
 *   gp              #GP  -> trap: vector 13 (non-canonical address)
 *   pf              #PF  -> trap: vector 14, cr2=0x7ffffffff000 (unmapped)
 * Each prints one trap line and exits 255; if the exception does not
 * happen, prints "TRAP FAIL" and exits 1. Unknown name: exit 2.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "ud2";
    printf("raising %s\n", what);
    if (strcmp(what, "ud2") == 0) {
        __asm__ __volatile__("ud2");
    } else if (strcmp(what, "div0") == 0) {
        uint32_t lo = 1, hi = 0, divisor = 0;
        __asm__("" : "+r"(divisor));
        __asm__ __volatile__("divl %2" : "+a"(lo), "+d"(hi) : "r"(divisor));
    } else if (strcmp(what, "gp") == 0) {
        uintptr_t a = 0x8000000000000000ull;
        __asm__("" : "+r"(a));
        (void)*(volatile uint64_t *)a;
    } else if (strcmp(what, "pf") == 0) {
        uintptr_t a = 0x7ffffffff000ull;
        __asm__("" : "+r"(a));
        (void)*(volatile uint64_t *)a;
    } else {
        printf("unknown exception '%s'\n", what);
        return 2;
    }
    puts("TRAP FAIL");
    return 1;
}
