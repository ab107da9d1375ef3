/* A hostile or careless client: every misuse must get its status (and a message), never a trap
 * in the library, and the library must go on serving. Built against the frozen v1 header, so it
 * also proves a v1 client works with the current library. Exits 0 when every check held. */
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include "testvm.h"

static const unsigned char halt[] = {0xF4};                  /* hlt */
static const unsigned char spin[] = {0xEB, 0xFE};            /* jmp . */
static const unsigned char out_then_halt[] = {0xB0, 0x41, 0xE6, 0x80, 0xF4}; /* mov al,'A'; out 0x80,al; hlt */

struct runner { swiftlet_vcpu_t vcpu; int status; struct swiftlet_exit ex; volatile int started; };

static void *run_on_thread(void *arg) {
    struct runner *r = arg;
    r->ex.size = sizeof r->ex;
    r->started = 1;
    r->status = swiftlet_vcpu_run(r->vcpu, &r->ex);
    return NULL;
}

static void ignore_io(void *context, struct swiftlet_io_access *access) { (void)context; (void)access; }
static void ignore_mem(void *context, struct swiftlet_mem_access *access) { (void)context; (void)access; }

static void sleep_ms(long ms) { struct timespec t = {0, ms * 1000000L}; nanosleep(&t, NULL); }

int main(void) {
    swiftlet_machine_t machine = 0;
    swiftlet_vcpu_t vcpu = 0;
    /* Before swiftlet_open: only the version and the message are allowed. */
    EXPECT(swiftlet_machine_create(0, &machine) == SWIFTLET_E_NOT_OPEN, "create before open");
    EXPECT(strstr(last_message(), "swiftlet_open") != NULL, "the message names swiftlet_open");
    EXPECT(swiftlet_abi_version() >= 1, "abi version");
    EXPECT(swiftlet_open(0) == SWIFTLET_E_VERSION, "version 0");
    EXPECT(swiftlet_open(swiftlet_abi_version() + 1) == SWIFTLET_E_VERSION, "a version from the future");
    EXPECT(swiftlet_machine_create(0, &machine) == SWIFTLET_E_NOT_OPEN, "a failed open opens nothing");
    MUST(swiftlet_open(SWIFTLET_ABI_VERSION));

    struct swiftlet_capabilities caps = {.size = sizeof caps};
    MUST(swiftlet_capabilities(&caps));
    EXPECT(caps.max_vcpus >= 1 && caps.max_mappings >= 1 && caps.page_size == 4096 && caps.assists == 3, "capabilities");
    caps.size = 4;
    EXPECT(swiftlet_capabilities(&caps) == SWIFTLET_E_STRUCT_SIZE, "a v0-sized struct");

    /* NULL pointers and unknown flags. */
    EXPECT(swiftlet_machine_create(0, NULL) == SWIFTLET_E_INVALID, "NULL out pointer");
    EXPECT(swiftlet_machine_create(1u << 7, &machine) == SWIFTLET_E_INVALID, "unknown flags");

    unsigned char *ram = testvm_machine(&machine, spin, sizeof spin);
    static unsigned char other[2 << 20] __attribute__((aligned(4096)));
    /* Mappings: overlapping, unaligned, empty, NULL, unknown flags, unmapping what is not there. */
    EXPECT(swiftlet_machine_map(machine, 0x100000, other, 0x1000, 0) == SWIFTLET_E_OVERLAP, "overlap");
    EXPECT(swiftlet_machine_map(machine, 0x400001, other, 0x1000, 0) == SWIFTLET_E_ALIGNMENT, "unaligned gpa");
    EXPECT(swiftlet_machine_map(machine, 0x400000, other + 1, 0x1000, 0) == SWIFTLET_E_ALIGNMENT, "unaligned host");
    EXPECT(swiftlet_machine_map(machine, 0x400000, other, 0x1001, 0) == SWIFTLET_E_ALIGNMENT, "unaligned size");
    EXPECT(swiftlet_machine_map(machine, 0x400000, other, 0, 0) == SWIFTLET_E_INVALID, "empty");
    EXPECT(swiftlet_machine_map(machine, 0x400000, NULL, 0x1000, 0) == SWIFTLET_E_INVALID, "NULL host");
    EXPECT(swiftlet_machine_map(machine, 0x400000, other, 0x1000, 4) == SWIFTLET_E_INVALID, "unknown map flags");
    EXPECT(swiftlet_machine_map(machine, UINT64_MAX & ~0xFFFull, other, 0x2000, 0) == SWIFTLET_E_INVALID, "wraps");
    EXPECT(swiftlet_machine_unmap(machine, 0x400000, 0x1000) == SWIFTLET_E_NOT_FOUND, "unmap of nothing");
    MUST(swiftlet_machine_map(machine, 0x400000, other, sizeof other, SWIFTLET_MAP_READONLY));
    EXPECT(swiftlet_machine_unmap(machine, 0x400000, 0x1000) == SWIFTLET_E_NOT_FOUND, "unmap of part of a mapping");
    MUST(swiftlet_machine_unmap(machine, 0x400000, sizeof other));
    EXPECT(swiftlet_machine_irq_line(machine, 4, 1) == SWIFTLET_E_INVALID, "irq line without the irqchip");

    /* vCPUs: a bad index, a machine handle as a vCPU, structs too small. */
    EXPECT(swiftlet_vcpu_create(machine, caps.max_vcpus, &vcpu) == SWIFTLET_E_INVALID, "index past the limit");
    MUST(swiftlet_vcpu_create(machine, 0, &vcpu));
    testvm_long_mode(vcpu);
    struct swiftlet_regs regs = {.size = 16};
    EXPECT(swiftlet_vcpu_get_regs(vcpu, &regs) == SWIFTLET_E_STRUCT_SIZE, "small regs");
    EXPECT(swiftlet_vcpu_get_regs(machine, &regs) == SWIFTLET_E_HANDLE, "a machine handle as a vCPU");
    EXPECT(swiftlet_machine_destroy(vcpu) == SWIFTLET_E_HANDLE, "a vCPU handle as a machine");
    EXPECT(swiftlet_vcpu_get_regs(vcpu, NULL) == SWIFTLET_E_INVALID, "NULL regs");
    struct swiftlet_msr msrs[65] = {{0}};
    EXPECT(swiftlet_vcpu_get_msrs(vcpu, msrs, 0) == SWIFTLET_E_INVALID, "0 MSRs");
    EXPECT(swiftlet_vcpu_get_msrs(vcpu, msrs, 65) == SWIFTLET_E_INVALID, "65 MSRs");
    msrs[0].index = 0x174; msrs[0].value = 0x10;  /* IA32_SYSENTER_CS */
    MUST(swiftlet_vcpu_set_msrs(vcpu, msrs, 1));
    msrs[0].value = 0;
    MUST(swiftlet_vcpu_get_msrs(vcpu, msrs, 1));
    EXPECT(msrs[0].value == 0x10, "an MSR round trip gave %llx", (unsigned long long)msrs[0].value);
    struct swiftlet_fpu fpu = {.size = sizeof fpu};
    MUST(swiftlet_vcpu_get_fpu(vcpu, &fpu));
    fpu.xmm[3][5] = 0xA5; fpu.fcw = 0x27F;
    MUST(swiftlet_vcpu_set_fpu(vcpu, &fpu));
    memset(&fpu, 0, sizeof fpu); fpu.size = sizeof fpu;
    MUST(swiftlet_vcpu_get_fpu(vcpu, &fpu));
    EXPECT(fpu.xmm[3][5] == 0xA5 && fpu.fcw == 0x27F, "an FPU round trip");
    uint64_t gpa = 0;
    MUST(swiftlet_vcpu_translate(vcpu, 0x123456, &gpa));
    EXPECT(gpa == 0x123456, "identity translation gave %llx", (unsigned long long)gpa);
    EXPECT(swiftlet_vcpu_translate(vcpu, 0x8000000000ull, &gpa) == SWIFTLET_E_NOT_FOUND, "an unmapped GVA");

    /* An assist with no ex of its kind. */
    struct swiftlet_exit ex = {.size = sizeof ex, .reason = SWIFTLET_EXIT_IO};
    EXPECT(swiftlet_assist_io(vcpu, &ex, ignore_io, NULL) == SWIFTLET_E_WRONG_EXIT, "assist_io before any ex");
    EXPECT(swiftlet_assist_io(vcpu, &ex, NULL, NULL) == SWIFTLET_E_INVALID, "NULL callback");

    /* One vCPU run from two threads: the second gets BUSY at once; so do state calls and destroys.
     * A kick ends the first run with INTERRUPTED. */
    struct runner r = {.vcpu = vcpu};
    pthread_t thread;
    pthread_create(&thread, NULL, run_on_thread, &r);
    while (!r.started) sleep_ms(1);
    sleep_ms(100);
    EXPECT(swiftlet_vcpu_run(vcpu, &ex) == SWIFTLET_E_BUSY, "a second run");
    regs.size = sizeof regs;
    EXPECT(swiftlet_vcpu_get_regs(vcpu, &regs) == SWIFTLET_E_BUSY, "regs of a running vCPU");
    EXPECT(swiftlet_vcpu_destroy(vcpu) == SWIFTLET_E_BUSY, "destroying a running vCPU");
    EXPECT(swiftlet_machine_destroy(machine) == SWIFTLET_E_BUSY, "destroying a machine whose vCPU runs");
    MUST(swiftlet_vcpu_kick(vcpu));
    pthread_join(thread, NULL);
    EXPECT(r.status == SWIFTLET_OK && r.ex.reason == SWIFTLET_EXIT_INTERRUPTED, "the kicked run: %d, reason %u", r.status, r.ex.reason);
    ex.reason = SWIFTLET_EXIT_MMIO;
    EXPECT(swiftlet_assist_mem(vcpu, &ex, ignore_mem, NULL) == SWIFTLET_E_WRONG_EXIT, "assist_mem after an interrupted ex");

    /* A port ex, then an assist of the other kind, and a forged reason. */
    memcpy(ram + CODE, out_then_halt, sizeof out_then_halt);
    regs.size = sizeof regs;
    MUST(swiftlet_vcpu_get_regs(vcpu, &regs));
    regs.rip = CODE;
    MUST(swiftlet_vcpu_set_regs(vcpu, &regs));
    ex.size = sizeof ex;
    MUST(swiftlet_vcpu_run(vcpu, &ex));
    EXPECT(ex.reason == SWIFTLET_EXIT_IO && ex.u.io.port == 0x80 && ex.u.io.data[0] == 'A', "the OUT ex");
    EXPECT(swiftlet_assist_mem(vcpu, &ex, ignore_mem, NULL) == SWIFTLET_E_WRONG_EXIT, "assist_mem on a port ex");
    ex.reason = SWIFTLET_EXIT_MMIO;
    EXPECT(swiftlet_assist_mem(vcpu, &ex, ignore_mem, NULL) == SWIFTLET_E_WRONG_EXIT, "a forged MMIO reason");
    ex.reason = SWIFTLET_EXIT_IO;
    ex.u.io.count = 100000; ex.u.io.data = NULL;  /* forged payload: the library serves its own record */
    MUST(swiftlet_assist_io(vcpu, &ex, ignore_io, NULL));
    MUST(swiftlet_vcpu_run(vcpu, &ex));
    EXPECT(ex.reason == SWIFTLET_EXIT_HALT, "halted, reason %u", ex.reason);

    /* Destroyed handles stay invalid; the library goes on serving. */
    MUST(swiftlet_machine_destroy(machine));
    EXPECT(swiftlet_vcpu_run(vcpu, &ex) == SWIFTLET_E_HANDLE, "a vCPU of a destroyed machine");
    EXPECT(swiftlet_machine_destroy(machine) == SWIFTLET_E_HANDLE, "destroying twice");
    EXPECT(swiftlet_vcpu_create(machine, 1, &vcpu) == SWIFTLET_E_HANDLE, "a vCPU on a destroyed machine");
    munmap(ram, RAM_SIZE);
    ram = testvm_machine(&machine, halt, sizeof halt);
    MUST(swiftlet_vcpu_create(machine, 0, &vcpu));
    testvm_long_mode(vcpu);
    MUST(swiftlet_vcpu_run(vcpu, &ex));
    EXPECT(ex.reason == SWIFTLET_EXIT_HALT, "a new machine after all that halts");
    MUST(swiftlet_vcpu_destroy(vcpu));
    MUST(swiftlet_machine_destroy(machine));
    munmap(ram, RAM_SIZE);
    printf("bad_input: %d failures\n", failures);
    return failures ? 1 : 0;
}
