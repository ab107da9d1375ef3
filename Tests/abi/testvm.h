/* What the ABI test clients share: a checked call, and a machine with 2 MiB of RAM whose vCPUs
 * start in 64-bit long mode at CODE (page tables identity-map the first GiB with 2 MiB pages). */
#ifndef SWIFTLET_TESTVM_H
#define SWIFTLET_TESTVM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <swiftlet/swiftlet.h>

#define RAM_SIZE (2u << 20)
#define CODE 0x8000u

static int failures;

#define EXPECT(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, " [%s]\n", last_message()); } } while (0)
#define MUST(call) do { int s_ = (call); if (s_ != SWIFTLET_OK) { fprintf(stderr, "FATAL %s:%d: %s = %d: %s\n", \
    __FILE__, __LINE__, #call, s_, last_message()); exit(1); } } while (0)

static const char *last_message(void) {
    static char message[512];
    swiftlet_last_error(message, sizeof message);
    return message;
}

/* A machine whose RAM holds the page tables and `code` at CODE. */
static inline unsigned char *testvm_machine(swiftlet_machine_t *machine, const unsigned char *code, size_t length) {
    MUST(swiftlet_machine_create(0, machine));
    unsigned char *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) { perror("mmap"); exit(1); }
    uint64_t *pml4 = (uint64_t *)(ram + 0x1000), *pdpt = (uint64_t *)(ram + 0x2000), *pd = (uint64_t *)(ram + 0x3000);
    pml4[0] = 0x2000 | 3;
    pdpt[0] = 0x3000 | 3;
    for (uint64_t i = 0; i < 512; i++) pd[i] = (i << 21) | 0x83;
    memcpy(ram + CODE, code, length);
    MUST(swiftlet_machine_map(*machine, 0, ram, RAM_SIZE, 0));
    return ram;
}

static inline void testvm_long_mode(swiftlet_vcpu_t vcpu) {
    struct swiftlet_sregs sregs = {.size = sizeof sregs};
    MUST(swiftlet_vcpu_get_sregs(vcpu, &sregs));
    struct swiftlet_segment code = {.limit = 0xFFFFFFFF, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
    struct swiftlet_segment data = code;
    data.selector = 0x10, data.type = 3, data.l = 0, data.db = 1;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr3 = 0x1000, sregs.cr4 = 1u << 5, sregs.cr0 = 0x80000011u, sregs.efer = 0x500;
    MUST(swiftlet_vcpu_set_sregs(vcpu, &sregs));
    struct swiftlet_regs regs = {.size = sizeof regs, .rip = CODE, .rflags = 2, .rsp = CODE};
    MUST(swiftlet_vcpu_set_regs(vcpu, &regs));
}

#endif
