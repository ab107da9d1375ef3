/*
 * debugme: a target for the gdb stub tests (swiftlet hvt --gdb, solo5-hvt-debug).
 * main reads `counter` (7), passes it to compute() (x * 2 + 1 = 15), prints
 * "result=N", bumps `counter` (a watchpoint target) and exits 0 when the
 * result was 15, 3 otherwise: a debugger that changes x (or its register)
 * changes both the output and the exit status.
 *   debugme spin   loops until a debugger sets `spinning` to 0 (Ctrl-C tests),
 *                  then goes on as above.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

volatile int counter = 7;
volatile int spinning = 1;

__attribute__((noinline)) int compute(int x)
{
    int doubled = x * 2;
    return doubled + 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "spin") == 0) {
        puts("spinning");
        while (spinning)
            __asm__ __volatile__("pause");
    }
    int result = compute(counter);
    printf("result=%d\n", result);
    counter = counter + 1;
    printf("counter=%d\n", counter);
    return result == 15 ? 0 : 3;
}
