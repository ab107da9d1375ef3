/* abort: print a line, then halt with status 255 (Solo5's abort). */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    puts("about to abort");
    abort();
}
