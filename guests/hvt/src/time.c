/*
 * time: walltime sanity (after 2020) and a 100 ms poll/yield timeout that
 * must take >= 90 ms and < 5 s of wall time.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

#define NSEC_PER_MSEC 1000000ul
#define NSEC_PER_SEC  1000000000ul
#define Y2020_NS      (1577836800ul * NSEC_PER_SEC)    /* 2020-01-01 UTC */

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ok = 1;

    uint64_t t0 = walltime();
    printf("walltime=%lu\n", t0);
    if (t0 < Y2020_NS) {
        puts("FAIL: walltime is before 2020");
        ok = 0;
    }

    uint64_t ready = ~0ull;
    uint64_t c0 = rdtsc();
    int ret = hvt_poll(100 * NSEC_PER_MSEC, &ready);
    uint64_t c1 = rdtsc();
    uint64_t t1 = walltime();
    uint64_t elapsed = t1 - t0;
    printf("poll(100ms): ret=%d ready_set=0x%lx elapsed_ms=%lu\n", ret, ready,
           elapsed / NSEC_PER_MSEC);
    if (hvt_bi->cpu_cycle_freq)
        printf("tsc_elapsed_ms=%lu\n",
               (c1 - c0) / (hvt_bi->cpu_cycle_freq / 1000));
    if (t1 < t0) {
        puts("FAIL: walltime went backwards");
        ok = 0;
    } else if (elapsed < 90 * NSEC_PER_MSEC) {
        puts("FAIL: poll returned too early");
        ok = 0;
    } else if (elapsed >= 5 * NSEC_PER_SEC) {
        puts("FAIL: poll took too long");
        ok = 0;
    }
    if (ready != 0) {
        puts("FAIL: ready_set nonzero without devices");
        ok = 0;
    }

    /* A zero timeout must not block. */
    uint64_t t2 = walltime();
    hvt_poll(0, NULL);
    uint64_t t3 = walltime();
    printf("poll(0): elapsed_ms=%lu\n", (t3 - t2) / NSEC_PER_MSEC);
    if (t3 - t2 >= 1 * NSEC_PER_SEC) {
        puts("FAIL: poll(0) blocked");
        ok = 0;
    }

    if (!ok)
        return 1;
    puts("SUCCESS");
    return 0;
}
