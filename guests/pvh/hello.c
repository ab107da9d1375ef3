/* hello: prints what the VMM handed over (command line, memory map, initrd) and exits 42. */
#include "guest.h"

int guest_main(struct hvm_start_info *si)
{
    serial_puts("pvh: hello from a freestanding guest\n");
    serial_puts("pvh: cmdline=");
    serial_puts((const char *)(uintptr_t)si->cmdline_paddr);
    serial_puts("\npvh: rsdp=");
    serial_puthex(si->rsdp_paddr);
    serial_puts("\n");
    uint64_t ram = 0;
    struct hvm_memmap_entry *m = (struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries; i++)
        if (m[i].type == 1) ram += m[i].size;
    serial_puts("pvh: ram_kib=");
    serial_putu(ram >> 10);
    serial_puts("\npvh: modules=");
    serial_putu(si->nr_modules);
    if (si->nr_modules) {
        struct hvm_modlist_entry *mod = (struct hvm_modlist_entry *)(uintptr_t)si->modlist_paddr;
        serial_puts(" first_bytes=");
        const char *p = (const char *)(uintptr_t)mod[0].paddr;
        for (int i = 0; i < 8 && i < (int)mod[0].size; i++) serial_putc(p[i]);
    }
    serial_puts("\n");
    /* The RSDP must carry its signature. */
    const char *rsdp = (const char *)(uintptr_t)si->rsdp_paddr;
    int ok = rsdp[0] == 'R' && rsdp[1] == 'S' && rsdp[2] == 'D' && rsdp[3] == ' ';
    serial_puts(ok ? "pvh: acpi ok\n" : "pvh: acpi missing\n");
    return ok ? 42 : 1;
}
