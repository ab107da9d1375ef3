// Intentionally empty: every CKVM shim is static inline in include/CKVM.h. SwiftPM needs one source file.
#include "CKVM.h"
