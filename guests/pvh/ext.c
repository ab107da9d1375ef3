/* ext: talks to an extension device (docs/abi.md, "Extensions"; examples/extensions): the
 * "increment" device, ports 0x520-0x527 and MMIO 0xF000_0000-0xF000_0FFF.
 *   - port 0x520 / MMIO +0: a write stores a value, a read returns the value stored + 1;
 *   - port 0x524: a write of a guest-physical address makes the device read 8 bytes there and
 *     write them back each plus 1 (its checked memory requests), before the write completes.
 * Checks each once, then (the test's cue "ext: loop") accesses the port until it reads all ones,
 * the sign that the device failed (the test kills the extension), then checks that MMIO reads
 * all ones too and exits 0. Exits 1 on a wrong answer, 2 if the device never failed.
 * With the command line "bench N" it only reads port 0x520 N times and exits 0
 * (bench/extension-roundtrip, with and without an extension). */
#include "guest.h"

#define PORT 0x520
#define MEMPORT 0x524
#define MMIO ((volatile uint32_t *)(uintptr_t)0xF0000000u)

static uint8_t buffer[8] __attribute__((aligned(8))) = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};

/* N from a command line "bench N", else 0. */
static uint32_t bench_count(const char *cmdline)
{
    const char *p = cmdline;
    if (!p || p[0] != 'b' || p[1] != 'e' || p[2] != 'n' || p[3] != 'c' || p[4] != 'h' || p[5] != ' ') return 0;
    uint32_t n = 0;
    for (p += 6; *p >= '0' && *p <= '9'; p++) n = n * 10 + (uint32_t)(*p - '0');
    return n;
}

int guest_main(struct hvm_start_info *si)
{
    uint32_t n = bench_count((const char *)(uintptr_t)si->cmdline_paddr);
    if (n) {
        uint32_t sum = 0;
        for (uint32_t i = 0; i < n; i++) sum += inl(PORT);
        serial_puts("ext: bench done ");
        serial_putu(sum);
        serial_puts("\n");
        return 0;
    }
    outl(PORT, 41);
    uint32_t v = inl(PORT);
    if (v != 42) { serial_puts("ext: port answered "); serial_putu(v); serial_puts("\n"); return 1; }
    serial_puts("ext: port ok\n");
    MMIO[0] = 0x1233;
    v = MMIO[0];
    if (v != 0x1234) { serial_puts("ext: mmio answered "); serial_puthex(v); serial_puts("\n"); return 1; }
    serial_puts("ext: mmio ok\n");
    outl(MEMPORT, (uint32_t)(uintptr_t)buffer);
    for (int i = 0; i < 8; i++)
        if (buffer[i] != (uint8_t)('b' + i)) { serial_puts("ext: memory not updated\n"); return 1; }
    serial_puts("ext: memory ok\n");

    serial_puts("ext: loop\n");
    uint64_t answered = 0;
    for (uint32_t i = 0; i < 200000; i++) {
        outl(PORT, i);
        v = inl(PORT);
        if (v == 0xFFFFFFFFu) break;
        if (v != i + 1) { serial_puts("ext: loop answered wrong\n"); return 1; }
        answered++;
    }
    if (v != 0xFFFFFFFFu) { serial_puts("ext: the device never failed\n"); return 2; }
    serial_puts("ext: device failed after ");
    serial_putu(answered);
    serial_puts(" answers\n");
    v = MMIO[0];
    if (v != 0xFFFFFFFFu) { serial_puts("ext: mmio after the failure answered "); serial_puthex(v); serial_puts("\n"); return 1; }
    serial_puts("ext: all ones after the failure; the VM goes on\n");
    return 0;
}
