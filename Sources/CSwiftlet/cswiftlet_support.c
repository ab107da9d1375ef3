// The thread-local last-error buffer behind swiftlet_last_error (cswiftlet_support.h).
#include "cswiftlet_support.h"
#include "swiftlet/swiftlet.h"

#include <string.h>

// One line is all a message is: at most 511 bytes are kept. Initial-exec: every call touches it
// (a success clears it), and the general-dynamic model of a shared library would make that a
// __tls_get_addr call per exit; 512 bytes fit the static TLS glibc keeps for libraries.
_Thread_local char cswiftlet_last_error[512] __attribute__((tls_model("initial-exec")));
#define last_error cswiftlet_last_error

void cswiftlet_set_error(const char *message, size_t length) {
    size_t kept = length < sizeof last_error - 1 ? length : sizeof last_error - 1;
    if (kept > 0 && message) memcpy(last_error, message, kept);
    last_error[kept] = '\0';
}

size_t cswiftlet_copy_error(char *buffer, size_t size) {
    size_t kept = strlen(last_error);
    if (buffer && size > 0) {
        size_t n = kept < size - 1 ? kept : size - 1;
        memcpy(buffer, last_error, n);
        buffer[n] = '\0';
    }
    return kept;
}
