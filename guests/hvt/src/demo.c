/* demo: the README demo unikernel. */
#include "hvt_guest.h"

HVT_MANIFEST();

/* Days since 1970-01-01 -> proleptic Gregorian y/m/d. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;                                    /* shift to 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);    /* day of era */
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;              /* March-based month */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int main(int argc, char **argv)
{
    puts("Swiftlet demo unikernel: hello from a Solo5-compatible hvt guest!");
    printf("  arguments: %d\n", argc - 1);
    for (int i = 1; i < argc; i++)
        printf("    argv[%d] = %s\n", i, argv[i]);
    printf("  memory:    %lu MiB (%lu bytes)\n", hvt_bi->mem_size >> 20,
           hvt_bi->mem_size);
    if (hvt_bi->cpu_cycle_freq)
        printf("  tsc:       %lu MHz\n", hvt_bi->cpu_cycle_freq / 1000000);
    uint64_t ns = walltime();
    uint64_t secs = ns / 1000000000ull;
    int64_t y;
    unsigned mo, d;
    civil_from_days((int64_t)(secs / 86400), &y, &mo, &d);
    unsigned sod = (unsigned)(secs % 86400);
    printf("  walltime:  %ld-%02u-%02u %02u:%02u:%02u UTC (%lu ns)\n", (long)y,
           mo, d, sod / 3600, sod / 60 % 60, sod % 60, ns);
    puts("Bye!");
    return 0;
}
