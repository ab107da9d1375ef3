// The thread-local last-error buffer behind swiftlet_last_error (cswiftlet_support.h).
#include "cswiftlet_support.h"
#include "swiftlet/swiftlet.h"

#include <string.h>

// One line is all a message is: at most 511 bytes are kept.
static _Thread_local char last_error[512];

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
