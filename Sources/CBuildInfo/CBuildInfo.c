#include "CBuildInfo.h"

#ifndef SWIFTLET_COMMIT
#define SWIFTLET_COMMIT "unknown"
#endif

const char *swiftlet_build_commit(void) { return SWIFTLET_COMMIT; }
