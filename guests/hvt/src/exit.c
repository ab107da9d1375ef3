/* exit: exit with the status given as the first argument (default 0). */
#include "hvt_guest.h"

HVT_MANIFEST();

int main(int argc, char **argv)
{
    int status = 0;
    if (argc > 1) {
        int ok;
        status = (int)hvt_atol(argv[1], &ok);
        if (!ok) {
            printf("exit: bad status '%s'\n", argv[1]);
            return 2;
        }
    }
    printf("exiting with status %d\n", status);
    return status;
}
