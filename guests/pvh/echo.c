/* echo: reads lines from COM1 (polling) and prints "got: LINE" until it reads "quit";
 * exits with the number of lines before it. Tests the console input path. */
#include "guest.h"

static int serial_getc(void)
{
    while (!(inb(0x3F8 + 5) & 0x01)) { }   /* LSR.DR */
    return inb(0x3F8);
}

int guest_main(struct hvm_start_info *si)
{
    (void)si;
    serial_puts("echo: ready\n");
    char line[128];
    int lines = 0;
    for (;;) {
        size_t n = 0;
        for (;;) {
            int c = serial_getc();
            if (c == '\r' || c == '\n') break;
            if (n + 1 < sizeof line) line[n++] = (char)c;
        }
        line[n] = 0;
        if (n == 0) continue;
        if (line[0] == 'q' && line[1] == 'u' && line[2] == 'i' && line[3] == 't' && line[4] == 0) break;
        serial_puts("got: ");
        serial_puts(line);
        serial_puts("\n");
        lines++;
    }
    return lines;
}
