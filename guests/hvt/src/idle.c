/* idle: yields with a very long timeout forever (density benchmarks). */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    puts("idle: ready");
    for (;;)
        hvt_poll(3600ull * 1000000000ull, NULL);
}
