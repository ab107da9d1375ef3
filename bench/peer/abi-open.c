/* abi-open: how long a client waits for libswiftlet before it can run a guest: dlopen of
 * libswiftlet.so.1, swiftlet_open, swiftlet_machine_create and one vCPU, in a fresh process (the
 * dynamic loader's work and the Swift runtime's start are part of it). Prints one line of
 * nanoseconds per step; bench/abi-roundtrip runs it.
 *   abi-open LIBRARY */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: abi-open LIBRARY\n"); return 2; }
    uint64_t t0 = now();
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "abi-open: %s\n", dlerror()); return 1; }
    int (*open_)(uint32_t) = (int (*)(uint32_t))dlsym(lib, "swiftlet_open");
    int (*create)(uint32_t, uint64_t *) = (int (*)(uint32_t, uint64_t *))dlsym(lib, "swiftlet_machine_create");
    int (*vcpu)(uint64_t, uint32_t, uint64_t *) = (int (*)(uint64_t, uint32_t, uint64_t *))dlsym(lib, "swiftlet_vcpu_create");
    int (*destroy)(uint64_t) = (int (*)(uint64_t))dlsym(lib, "swiftlet_machine_destroy");
    if (!open_ || !create || !vcpu || !destroy) { fprintf(stderr, "abi-open: missing symbols\n"); return 1; }
    uint64_t t1 = now();
    if (open_(1) != 0) { fprintf(stderr, "abi-open: swiftlet_open failed\n"); return 1; }
    uint64_t t2 = now();
    uint64_t machine = 0, v = 0;
    if (create(0, &machine) != 0 || vcpu(machine, 0, &v) != 0) { fprintf(stderr, "abi-open: machine or vCPU failed\n"); return 1; }
    uint64_t t3 = now();
    destroy(machine);
    printf("abi-open dlopen_ns=%llu open_ns=%llu create_ns=%llu\n", (unsigned long long)(t1 - t0),
           (unsigned long long)(t2 - t1), (unsigned long long)(t3 - t2));
    return 0;
}
