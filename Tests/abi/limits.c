/* The limits docs/abi.md documents, tested where this KVM allows: as many vCPUs in one machine
 * as KVM_CAP_MAX_VCPUS (1,024 here, capped there) each run to HLT, and 128 machines in one
 * process, each with a vCPU run to HLT; then everything destroyed, and not one descriptor left.
 * Usage: limits [VCPUS] [MACHINES]. Exits 0 when all held. */
#include <dirent.h>
#include <sys/resource.h>
#include "testvm.h"

static const unsigned char halt[] = {0xF4};

static int open_descriptors(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n;
}

static int run_to_halt(swiftlet_vcpu_t vcpu) {
    struct swiftlet_exit ex = {.size = sizeof ex};
    testvm_long_mode(vcpu);
    return swiftlet_vcpu_run(vcpu, &ex) == SWIFTLET_OK && ex.reason == SWIFTLET_EXIT_HALT;
}

int main(int argc, char **argv) {
    unsigned vcpus = argc > 1 ? (unsigned)atoi(argv[1]) : 1024, machines = argc > 2 ? (unsigned)atoi(argv[2]) : 128;
    struct rlimit limit;  /* a vCPU is a descriptor: lift the soft limit to the hard one */
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    MUST(swiftlet_open(SWIFTLET_ABI_VERSION));
    struct swiftlet_capabilities caps = {.size = sizeof caps};
    MUST(swiftlet_capabilities(&caps));
    if (vcpus > caps.max_vcpus) vcpus = caps.max_vcpus;
    int before = open_descriptors();

    swiftlet_machine_t machine;
    unsigned char *ram = testvm_machine(&machine, halt, sizeof halt);
    swiftlet_vcpu_t *all = calloc(vcpus, sizeof *all);
    unsigned halted = 0;
    for (unsigned i = 0; i < vcpus; i++) {
        MUST(swiftlet_vcpu_create(machine, i, &all[i]));
        halted += run_to_halt(all[i]);
    }
    EXPECT(halted == vcpus, "%u of %u vCPUs halted", halted, vcpus);
    swiftlet_vcpu_t extra;
    EXPECT(swiftlet_vcpu_create(machine, vcpus - 1, &extra) != SWIFTLET_OK, "a vCPU index twice");
    for (unsigned i = 0; i < vcpus / 2; i++) MUST(swiftlet_vcpu_destroy(all[i]));
    MUST(swiftlet_machine_destroy(machine));  /* takes the other half with it */
    munmap(ram, RAM_SIZE);
    EXPECT(open_descriptors() == before, "descriptors after %u vCPUs: %d, before %d", vcpus, open_descriptors(), before);

    swiftlet_machine_t *many = calloc(machines, sizeof *many);
    unsigned char **rams = calloc(machines, sizeof *rams);
    halted = 0;
    for (unsigned i = 0; i < machines; i++) {
        rams[i] = testvm_machine(&many[i], halt, sizeof halt);
        swiftlet_vcpu_t vcpu;
        MUST(swiftlet_vcpu_create(many[i], 0, &vcpu));
        halted += run_to_halt(vcpu);
    }
    EXPECT(halted == machines, "%u of %u machines halted", halted, machines);
    for (unsigned i = 0; i < machines; i++) { MUST(swiftlet_machine_destroy(many[i])); munmap(rams[i], RAM_SIZE); }
    EXPECT(open_descriptors() == before, "descriptors after %u machines: %d, before %d", machines, open_descriptors(), before);
    printf("limits: %u vCPUs in one machine and %u machines halted; %d failures\n", vcpus, machines, failures);
    return failures ? 1 : 0;
}
