/* abi-loop: one port-I/O exit round trip, through libswiftlet or through raw KVM ioctls, with
 * the same long-mode guest (N `out %al, $0x80`, then HLT). Prints the run's figures:
 *   abi-loop MODE exits=N wall_ns=W user_ns=U sys_ns=S
 * Usage: abi-loop swiftlet|raw N. bench/abi-roundtrip runs both, alternating. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <swiftlet/swiftlet.h>

#define RAM_SIZE (2u << 20)
#define CODE 0x8000u

/* mov $N, %ecx; 1: out %al, $0x80; dec %ecx; jnz 1b; hlt */
static void write_guest(unsigned char *ram, uint32_t n) {
    uint64_t *pml4 = (uint64_t *)(ram + 0x1000), *pdpt = (uint64_t *)(ram + 0x2000), *pd = (uint64_t *)(ram + 0x3000);
    pml4[0] = 0x2000 | 3;
    pdpt[0] = 0x3000 | 3;
    for (uint64_t i = 0; i < 512; i++) pd[i] = (i << 21) | 0x83;
    unsigned char code[] = {0xB9, 0, 0, 0, 0, 0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xF4};
    memcpy(code + 1, &n, 4);
    memcpy(ram + CODE, code, sizeof code);
}

static void die(const char *what) { perror(what); exit(1); }

static uint64_t run_raw(unsigned char *ram) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)ram};
    if (vm < 0 || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("vm");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (vcpu < 0 || run == MAP_FAILED) die("vcpu");
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = {.c.nent = 256};
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0 || ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("cpuid");
    struct kvm_sregs s;
    ioctl(vcpu, KVM_GET_SREGS, &s);
    struct kvm_segment code = {.limit = 0xFFFFFFFF, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x10, data.type = 3, data.l = 0, data.db = 1;
    s.cs = code, s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr3 = 0x1000, s.cr4 = 1u << 5, s.cr0 = 0x80000011u, s.efer = 0x500;
    struct kvm_regs r = {.rip = CODE, .rflags = 2, .rsp = CODE};
    if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0 || ioctl(vcpu, KVM_SET_REGS, &r) < 0) die("regs");
    uint64_t exits = 0, sum = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_IO) { sum += ((uint8_t *)run)[run->io.data_offset]; exits++; continue; }
        if (run->exit_reason == KVM_EXIT_HLT) break;
        fprintf(stderr, "abi-loop raw: exit %u\n", run->exit_reason);
        exit(1);
    }
    (void)sum;
    return exits;
}

static void check(int status, const char *what) {
    if (status == SWIFTLET_OK) return;
    char m[512];
    swiftlet_last_error(m, sizeof m);
    fprintf(stderr, "abi-loop: %s: %s\n", what, m);
    exit(1);
}

static void count_port(void *context, struct swiftlet_io_access *access) { *(uint64_t *)context += access->data[0]; }

static uint64_t run_swiftlet(unsigned char *ram) {
    check(swiftlet_open(SWIFTLET_ABI_VERSION), "open");
    swiftlet_machine_t m;
    swiftlet_vcpu_t v;
    check(swiftlet_machine_create(0, &m), "machine");
    check(swiftlet_machine_map(m, 0, ram, RAM_SIZE, 0), "map");
    check(swiftlet_vcpu_create(m, 0, &v), "vcpu");
    struct swiftlet_sregs s = {.size = sizeof s};
    check(swiftlet_vcpu_get_sregs(v, &s), "sregs");
    struct swiftlet_segment code = {.limit = 0xFFFFFFFF, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
    struct swiftlet_segment data = code;
    data.selector = 0x10, data.type = 3, data.l = 0, data.db = 1;
    s.cs = code, s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr3 = 0x1000, s.cr4 = 1u << 5, s.cr0 = 0x80000011u, s.efer = 0x500;
    struct swiftlet_regs r = {.size = sizeof r, .rip = CODE, .rflags = 2, .rsp = CODE};
    check(swiftlet_vcpu_set_sregs(v, &s), "set sregs");
    check(swiftlet_vcpu_set_regs(v, &r), "set regs");
    struct swiftlet_exit e = {.size = sizeof e};
    uint64_t exits = 0, sum = 0;
    for (;;) {
        check(swiftlet_vcpu_run(v, &e), "run");
        if (e.reason == SWIFTLET_EXIT_IO) { check(swiftlet_assist_io(v, &e, count_port, &sum), "assist"); exits++; continue; }
        if (e.reason == SWIFTLET_EXIT_HALT) break;
        fprintf(stderr, "abi-loop swiftlet: exit %u\n", e.reason);
        exit(1);
    }
    return exits;
}

static uint64_t ns(struct timeval t) { return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_usec * 1000ull; }

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "raw") && strcmp(argv[1], "swiftlet"))) { fprintf(stderr, "usage: abi-loop swiftlet|raw N\n"); return 2; }
    uint32_t n = (uint32_t)strtoul(argv[2], NULL, 10);
    unsigned char *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    write_guest(ram, n);
    struct timespec a, b;
    struct rusage u0, u1;
    /* Set-up outside the measured loop would flatter neither side: both include it, and N makes it small. */
    clock_gettime(CLOCK_MONOTONIC, &a);
    getrusage(RUSAGE_SELF, &u0);
    uint64_t exits = strcmp(argv[1], "raw") == 0 ? run_raw(ram) : run_swiftlet(ram);
    getrusage(RUSAGE_SELF, &u1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (exits != n) { fprintf(stderr, "abi-loop: %llu exits, expected %u\n", (unsigned long long)exits, n); return 1; }
    printf("abi-loop %s exits=%u wall_ns=%llu user_ns=%llu sys_ns=%llu\n", argv[1], n,
           (unsigned long long)((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec)),
           (unsigned long long)(ns(u1.ru_utime) - ns(u0.ru_utime)), (unsigned long long)(ns(u1.ru_stime) - ns(u0.ru_stime)));
    return 0;
}
