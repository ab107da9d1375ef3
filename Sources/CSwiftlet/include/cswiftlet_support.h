// What LibSwiftlet needs from C besides swiftlet.h (not installed; not part of the ABI).
#ifndef CSWIFTLET_SUPPORT_H
#define CSWIFTLET_SUPPORT_H

#include <stddef.h>

// The calling thread's last error message (swiftlet_last_error): a thread-local buffer, so an
// error costs no allocation and threads never see each other's messages. `length` bytes of
// `message` are kept (at most 511); 0 clears it.
void cswiftlet_set_error(const char *message, size_t length);
// The buffer itself, so that a success can clear it inline (cswiftlet_clear_error): every call
// does, and a function call for it showed in the exit round trip's profile.
extern _Thread_local char cswiftlet_last_error[512] __attribute__((tls_model("initial-exec")));
static inline void cswiftlet_clear_error(void) { cswiftlet_last_error[0] = '\0'; }
// Copies the message as snprintf would and returns its length.
size_t cswiftlet_copy_error(char *buffer, size_t size);

#endif
