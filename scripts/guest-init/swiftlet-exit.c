/*
 * swiftlet-exit STATUS — report a guest's exit status to the VMM and stop.
 *
 * Writes the status byte (0-255) to the debug-exit I/O port 0xf4. Swiftlet ends `swiftlet run` with
 * that status; QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=1` exits with (STATUS << 1) | 1.
 * When the write does not end the VM (no such device), the program returns 0 so the caller can
 * power off; it returns 2 on a usage error and 1 when port access is refused.
 *
 * Built by scripts/make-guest with `gcc -static -Os`. Needs CAP_SYS_RAWIO (the guest's /init is root).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

#define DEBUG_EXIT_PORT 0xf4

int main(int argc, char **argv)
{
    char *end;
    long status;

    if (argc != 2) {
        fprintf(stderr, "usage: swiftlet-exit STATUS\n");
        return 2;
    }
    status = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || status < 0 || status > 255) {
        fprintf(stderr, "swiftlet-exit: status must be 0-255, got '%s'\n", argv[1]);
        return 2;
    }
    if (ioperm(DEBUG_EXIT_PORT, 1, 1) != 0) {
        perror("swiftlet-exit: ioperm");
        return 1;
    }
    outb((unsigned char)status, DEBUG_EXIT_PORT);
    return 0;
}
