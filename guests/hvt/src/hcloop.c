/*
 * hcloop: N walltime hypercalls in a tight loop (N = argv[1], default
 * 1000000); prints elapsed TSC cycles and wall-clock ns.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    uint64_t n = 1000000;
    if (argc > 1) {
        int ok;
        long v = hvt_atol(argv[1], &ok);
        if (!ok || v <= 0) {
            printf("hcloop: bad count '%s'\n", argv[1]);
            return 2;
        }
        n = (uint64_t)v;
    }
    uint64_t t0 = walltime();
    uint64_t c0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        (void)walltime();
    uint64_t c1 = rdtsc();
    uint64_t t1 = walltime();
    uint64_t cycles = c1 - c0, ns = t1 - t0;
    printf("hcloop: calls=%lu cycles=%lu ns=%lu\n", n, cycles, ns);
    printf("hcloop: cycles_per_call=%lu ns_per_call=%lu\n", cycles / n, ns / n);
    return 0;
}
