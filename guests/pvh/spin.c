/* spin: announces itself and then runs forever (tests that signals stop the VM). */
#include "guest.h"

int guest_main(struct hvm_start_info *si)
{
    (void)si;
    serial_puts("spin: running\n");
    for (;;)
        __asm__ volatile("pause");
}
