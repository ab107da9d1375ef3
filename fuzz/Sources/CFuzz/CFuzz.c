// Declarations only (include/CFuzz.h); libFuzzer defines them.
