#ifndef CBUILDINFO_H
#define CBUILDINFO_H

/// The git commit this build was made from: scripts/install sets SWIFTLET_COMMIT in the
/// environment and Package.swift defines it for this file alone (a plain `swift build` cannot
/// know it, and says "unknown").
const char *swiftlet_build_commit(void);

#endif
