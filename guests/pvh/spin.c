/* spin: announces itself and then runs forever (tests that signals stop the VM). With the command
 * line "silent" it says nothing at all (tests that the VMM notices a guest with no sign of life). */
#include "guest.h"

int guest_main(struct hvm_start_info *si)
{
    const char *cmdline = si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
    static const char silent[] = "silent";
    int quiet = 1;
    for (int i = 0; i < (int)sizeof silent; i++)
        if (cmdline[i] != silent[i]) { quiet = 0; break; }
    if (!quiet)
        serial_puts("spin: running\n");
    for (;;)
        __asm__ volatile("pause");
}
