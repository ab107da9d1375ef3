/*
 * A whole VMM in one page of C over libswiftlet's machine level (in the spirit of NetBSD's NVMM
 * demo VMM): one machine, 2 MiB of RAM, one vCPU put straight into 64-bit long mode, and a guest
 * (below, in assembly) that prints one line with `rep outsb` to port 0xE9 and another with byte
 * stores to an MMIO address. The VMM serves the first through swiftlet_assist_io (one callback
 * per byte) and the second through swiftlet_assist_mem, and stops at the guest's HLT.
 *
 *   cc -o machine machine.c $(pkg-config --cflags --libs swiftlet) && ./machine
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <swiftlet/swiftlet.h>

#define RAM_SIZE (2u << 20)
#define PML4 0x1000u /* page tables: PML4 -> PDPT -> PD of 2 MiB pages, the first GiB identity-mapped */
#define PDPT 0x2000u
#define PD 0x3000u
#define CODE 0x8000u
#define CONSOLE_PORT 0xE9
#define CONSOLE_MMIO 0x10000000u /* not RAM: every access is an MMIO exit */

/* The guest, position-independent 64-bit code assembled by the C compiler. */
extern const unsigned char guest_start[], guest_end[];
__asm__(".pushsection .rodata\n"
        ".globl guest_start\n"
        "guest_start:\n"
        "    lea 1f(%rip), %rsi\n"
        "    mov $(2f - 1f), %ecx\n"
        "    mov $0xE9, %dx\n"
        "    rep outsb\n" /* one exit for the whole line: the I/O assist splits it */
        "    lea 2f(%rip), %rsi\n"
        "    mov $0x10000000, %edi\n"
        "3:  lodsb\n"
        "    test %al, %al\n"
        "    jz 4f\n"
        "    mov %al, (%rdi)\n" /* an MMIO store per byte */
        "    jmp 3b\n"
        "4:  hlt\n"
        "1:  .ascii \"hello from the guest, through rep outsb and swiftlet_assist_io\\n\"\n"
        "2:  .asciz \"and again through MMIO stores and swiftlet_assist_mem\\n\"\n"
        ".globl guest_end\n"
        "guest_end:\n"
        ".popsection\n");

static void check(int status, const char *what) {
    if (status == SWIFTLET_OK) return;
    char message[512];
    swiftlet_last_error(message, sizeof message);
    fprintf(stderr, "machine: %s: %s (status %d)\n", what, message, status);
    exit(1);
}

static void console_port(void *context, struct swiftlet_io_access *access) {
    (void)context;
    if (access->port == CONSOLE_PORT && access->is_write) putchar(access->data[0]);
}

static void console_mmio(void *context, struct swiftlet_mem_access *access) {
    (void)context;
    if (access->gpa == CONSOLE_MMIO && access->is_write) putchar(access->data[0]);
    else if (!access->is_write) memset(access->data, 0xFF, sizeof access->data); /* nothing else answers */
}

/* Long mode as a boot loader would leave it: paging on, CS a 64-bit code segment. */
static void enter_long_mode(swiftlet_vcpu_t vcpu, unsigned char *ram) {
    uint64_t *pml4 = (uint64_t *)(ram + PML4), *pdpt = (uint64_t *)(ram + PDPT), *pd = (uint64_t *)(ram + PD);
    pml4[0] = PDPT | 3; /* present, writable */
    pdpt[0] = PD | 3;
    for (uint64_t i = 0; i < 512; i++) pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */

    struct swiftlet_sregs sregs = {.size = sizeof sregs};
    check(swiftlet_vcpu_get_sregs(vcpu, &sregs), "get sregs");
    struct swiftlet_segment code = {.base = 0, .limit = 0xFFFFFFFF, .selector = 0x8, .type = 11,
                                    .present = 1, .s = 1, .l = 1, .g = 1};
    struct swiftlet_segment data = code;
    data.selector = 0x10, data.type = 3, data.l = 0, data.db = 1;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr3 = PML4;
    sregs.cr4 = 1u << 5;                  /* PAE */
    sregs.cr0 = 0x80000001u | (1u << 4);  /* PG, PE, ET */
    sregs.efer = (1u << 8) | (1u << 10);  /* LME, LMA */
    check(swiftlet_vcpu_set_sregs(vcpu, &sregs), "set sregs");

    struct swiftlet_regs regs = {.size = sizeof regs, .rip = CODE, .rflags = 2, .rsp = CODE};
    check(swiftlet_vcpu_set_regs(vcpu, &regs), "set regs");
}

int main(void) {
    check(swiftlet_open(SWIFTLET_ABI_VERSION), "open");
    swiftlet_machine_t machine;
    check(swiftlet_machine_create(0, &machine), "create a machine");
    unsigned char *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) return perror("mmap"), 1;
    check(swiftlet_machine_map(machine, 0, ram, RAM_SIZE, 0), "map RAM");
    memcpy(ram + CODE, guest_start, (size_t)(guest_end - guest_start));

    swiftlet_vcpu_t vcpu;
    check(swiftlet_vcpu_create(machine, 0, &vcpu), "create a vCPU");
    enter_long_mode(vcpu, ram);

    struct swiftlet_exit exit = {.size = sizeof exit};
    unsigned long exits = 0;
    for (;;) {
        check(swiftlet_vcpu_run(vcpu, &exit), "run");
        exits++;
        if (exit.reason == SWIFTLET_EXIT_IO) {
            check(swiftlet_assist_io(vcpu, &exit, console_port, NULL), "assist_io");
        } else if (exit.reason == SWIFTLET_EXIT_MMIO) {
            check(swiftlet_assist_mem(vcpu, &exit, console_mmio, NULL), "assist_mem");
        } else if (exit.reason == SWIFTLET_EXIT_HALT) {
            break;
        } else {
            fprintf(stderr, "machine: unexpected exit %u\n", exit.reason);
            return 1;
        }
    }
    fflush(stdout);
    fprintf(stderr, "machine: the guest halted after %lu exits\n", exits);
    check(swiftlet_vcpu_destroy(vcpu), "destroy the vCPU");
    check(swiftlet_machine_destroy(machine), "destroy the machine");
    munmap(ram, RAM_SIZE);
    return 0;
}
