/* The "increment" device as a Swiftlet extension in C, with libswiftlet's helpers
 * (swiftlet_ext_*, docs/abi.md "Extensions"); the Python one beside it speaks the protocol
 * with plain sockets. Ports 0x520-0x527 and MMIO 0xF0000000-0xF0000FFF: a write stores a
 * value, a read returns it + 1; a write to port 0x524 of a guest-physical address makes the
 * device add 1 to each of the 8 bytes there (guests/pvh/ext.c drives it).
 *
 *   cc -o increment examples/extensions/increment.c $(pkg-config --cflags --libs swiftlet)
 *   swiftlet run --kernel ext.elf --extension ./increment
 */
#include <stdio.h>
#include <stdlib.h>
#include <swiftlet/swiftlet.h>

static void check(int status, const char *what) {
    if (status == SWIFTLET_OK) return;
    char message[512];
    swiftlet_last_error(message, sizeof message);
    fprintf(stderr, "increment: %s: %s\n", what, message);
    /* SWIFTLET_E_STATE: the VMM ended (or failed this device); either way we are done. */
    _Exit(status == SWIFTLET_E_STATE ? 0 : 1);
}

int main(void) {
    int channel;
    check(swiftlet_ext_connect("increment.c", &channel), "connect");
    check(swiftlet_ext_register(channel, SWIFTLET_EXT_PORT, 0x520, 8), "ports");
    check(swiftlet_ext_register(channel, SWIFTLET_EXT_MMIO, 0xF0000000u, 0x1000), "MMIO");
    check(swiftlet_ext_ready(channel), "ready");
    uint64_t stored[2] = {0, 0};
    struct swiftlet_ext_access a;
    for (;;) {
        check(swiftlet_ext_next_access(channel, &a), "next access");
        uint64_t answer = 0;
        if (a.space == SWIFTLET_EXT_PORT && a.address == 0x524 && a.is_write) {
            unsigned char bytes[8];
            check(swiftlet_ext_read_memory(channel, a.value, bytes, sizeof bytes), "read memory");
            for (int i = 0; i < 8; i++) bytes[i]++;
            check(swiftlet_ext_write_memory(channel, a.value, bytes, sizeof bytes), "write memory");
        } else if (a.is_write) {
            stored[a.space & 1] = a.value;
        } else {
            answer = stored[a.space & 1] + 1;
        }
        check(swiftlet_ext_complete(channel, &a, answer), "complete");
    }
}
