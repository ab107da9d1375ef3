/*
 * sse: executes SSE instructions (and fxsave/fxrstor) explicitly; the
 * tender must have set CR4.OSFXSR/OSXMMEXCPT, cleared CR0.EM and exposed
 * SSE in CPUID. Prints "SUCCESS" and exits 0; a #UD/#NM ends up in the
 * trap handler (exit 255).
 */
#include "hvt_guest.h"

HVT_MANIFEST();

static const float a[4] __attribute__((aligned(16))) = { 1.0f, 2.0f, 3.0f, 4.0f };
static const float b[4] __attribute__((aligned(16))) = { 0.5f, 0.5f, 0.5f, 0.5f };
static float r[4] __attribute__((aligned(16)));
static uint8_t fxarea[512] __attribute__((aligned(16)));

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint64_t cr0, cr4;
    __asm__ __volatile__("mov %%cr0, %0" : "=r"(cr0));
    __asm__ __volatile__("mov %%cr4, %0" : "=r"(cr4));
    printf("cr0=0x%lx cr4=0x%lx\n", cr0, cr4);

    puts("executing addps/mulps");
    /* r = (a + b) * b, computed with SSE; checked bit-exactly below. */
    __asm__ __volatile__("movaps %1, %%xmm0\n\t"
                         "movaps %2, %%xmm1\n\t"
                         "addps  %%xmm1, %%xmm0\n\t"
                         "mulps  %%xmm1, %%xmm0\n\t"
                         "xorps  %%xmm1, %%xmm1\n\t"
                         "movaps %%xmm0, %0\n\t"
                         : "=m"(r)
                         : "m"(a), "m"(b)
                         : "memory");
    /* 0.75, 1.25, 1.75, 2.25 as IEEE-754 single precision bit patterns. */
    static const uint32_t want[4] = { 0x3f400000, 0x3fa00000, 0x3fe00000, 0x40100000 };
    uint32_t got[4];
    memcpy(got, r, sizeof got);
    for (int i = 0; i < 4; i++) {
        if (got[i] != want[i]) {
            printf("FAIL: lane %d = 0x%x, want 0x%x\n", i, got[i], want[i]);
            return 1;
        }
    }
    puts("executing fxsave/fxrstor");
    __asm__ __volatile__("fxsave %0\n\tfxrstor %0" : "+m"(fxarea) : : "memory");
    puts("SUCCESS");
    return 0;
}
