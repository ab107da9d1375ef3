/*
 * hvt-mini: a minimal Solo5 "hvt" tender in plain C over /dev/kvm.
 *
 * Benchmark peer only (bench/exit-roundtrip, bench/start-to-exit, bench/rss):
 * it gives the Swiftlet tender a C baseline doing the same work with plain
 * ioctls. It is not a tender to run real workloads with: no devices, no
 * manifest patching (the MFT1 note is copied as-is, no device attached),
 * no ABI note check, no core dumps.
 *
 *   hvt-mini [--mem=MB] KERNEL.hvt [ARGS...]
 *
 * Loads the ELF's PT_LOAD segments at their physical addresses (>= 1 MiB),
 * builds identity-mapped 2 MiB page tables, enters the guest in 64-bit long
 * mode with %rdi = &hvt_boot_info, rsp = mem_size - 8, and serves the
 * hypercalls WALLTIME (1), PUTS (2), POLL (3, no devices: sleeps for the
 * timeout) and HALT (8, exits with the guest's status). Any other exit is an
 * error (status 1).
 *
 * Build: gcc -O2 -o hvt-mini hvt-mini.c
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

/* Guest-physical layout of the low 1 MiB (the kernel is linked at 1 MiB). */
#define GDT_BASE      0x1000ULL
#define PML4_BASE     0x2000ULL
#define PDPT_BASE     0x3000ULL
#define PD_BASE       0x4000ULL  /* 4 pages: 4 x 512 x 2 MiB = 4 GiB */
#define CMDLINE_BASE  0xC000ULL
#define CMDLINE_SIZE  8192ULL
#define BOOTINFO_BASE 0x10000ULL
#define MFT_BASE      0x11000ULL
#define MFT_MAX       (0x80000ULL - MFT_BASE)
#define KERNEL_MIN    0x100000ULL
#define MEM_MAX       (3072ULL << 20) /* hypercall args are 32-bit GPAs */

#define HVT_IO_BASE   0x500
#define HC_WALLTIME   1
#define HC_PUTS       2
#define HC_POLL       3
#define HC_HALT       8

#define SOLO5_NOTE_MANIFEST 0x3154464d /* "MFT1" */

struct hvt_boot_info {
    uint64_t mem_size, kernel_end, cpu_cycle_freq, cmdline, mft;
};
struct hc_walltime { uint64_t nsecs; };
struct hc_puts { uint64_t data; uint64_t len; };
struct hc_poll { uint64_t timeout_nsecs; uint64_t ready_set; int ret; };
struct hc_halt { uint64_t cookie; int exit_status; };

static uint8_t *mem;
static uint64_t mem_size;

static void die(const char *what)
{
    fprintf(stderr, "hvt-mini: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "hvt-mini: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

/* Pointer to [gpa, gpa+len) in guest memory, or NULL if out of bounds. */
static void *gpa_ptr(uint64_t gpa, uint64_t len)
{
    if (gpa > mem_size || len > mem_size - gpa)
        return NULL;
    return mem + gpa;
}

static void *checked(uint64_t gpa, uint64_t len, const char *what)
{
    void *p = gpa_ptr(gpa, len);
    if (!p)
        fail("guest passed an out-of-bounds %s", what);
    return p;
}

static void read_exact(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read kernel");
        if (n == 0)
            fail("%s", "kernel file truncated");
        done += n;
    }
}

/* Load PT_LOADs; returns the entry point, sets *end and (optional) manifest. */
static uint64_t load_elf(const char *path, uint64_t *end, uint64_t *mft_gpa)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    Elf64_Ehdr eh;
    read_exact(fd, &eh, sizeof eh, 0);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
        eh.e_type != ET_EXEC || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        eh.e_phnum > 64)
        fail("%s: not an x86_64 ELF executable", path);
    Elf64_Phdr ph[64];
    read_exact(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff);
    *end = 0;
    *mft_gpa = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr *p = &ph[i];
        if (p->p_type == PT_LOAD && p->p_memsz) {
            if (p->p_filesz > p->p_memsz || p->p_paddr < KERNEL_MIN ||
                !gpa_ptr(p->p_paddr, p->p_memsz))
                fail("%s: PT_LOAD outside guest memory (below 1 MiB or above --mem)", path);
            read_exact(fd, mem + p->p_paddr, p->p_filesz, p->p_offset);
            memset(mem + p->p_paddr + p->p_filesz, 0, p->p_memsz - p->p_filesz);
            if (p->p_paddr + p->p_memsz > *end)
                *end = p->p_paddr + p->p_memsz;
        } else if (p->p_type == PT_NOTE && p->p_filesz >= sizeof(Elf64_Nhdr) &&
                   p->p_filesz <= MFT_MAX) {
            /* Copy the Solo5 manifest note (if any) to low memory, as-is. */
            static uint8_t note[MFT_MAX];
            read_exact(fd, note, p->p_filesz, p->p_offset);
            for (uint64_t o = 0; o + sizeof(Elf64_Nhdr) <= p->p_filesz;) {
                Elf64_Nhdr *n = (Elf64_Nhdr *)(note + o);
                uint64_t desc = o + sizeof *n + ((n->n_namesz + 3) & ~3ULL);
                uint64_t next = desc + ((n->n_descsz + 3) & ~3ULL);
                if (next > p->p_filesz)
                    break;
                if (n->n_type == SOLO5_NOTE_MANIFEST && n->n_namesz == 6 &&
                    !memcmp(note + o + sizeof *n, "Solo5", 6)) {
                    /* struct mft is 8-aligned within the note: skip the padding. */
                    uint64_t pad = (8 - (desc - o) % 8) % 8;
                    if (n->n_descsz > pad) {
                        memcpy(mem + MFT_BASE, note + desc + pad, n->n_descsz - pad);
                        *mft_gpa = MFT_BASE;
                    }
                }
                o = next;
            }
        }
    }
    close(fd);
    if (*end == 0)
        fail("%s: no PT_LOAD segment", path);
    *end = (*end + 0xfff) & ~0xfffULL;
    return eh.e_entry;
}

static void setup_page_tables(void)
{
    uint64_t *pml4 = (uint64_t *)(mem + PML4_BASE);
    uint64_t *pdpt = (uint64_t *)(mem + PDPT_BASE);
    uint64_t *pd = (uint64_t *)(mem + PD_BASE);
    const uint64_t P = 1, RW = 2, PS = 0x80;
    pml4[0] = PDPT_BASE | P | RW;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (PD_BASE + i * 0x1000) | P | RW;
    for (uint64_t a = 0; a < mem_size; a += 2ULL << 20)
        pd[a >> 21] = a | P | RW | PS;
}

static void setup_sregs(int vcpu)
{
    struct kvm_sregs s;
    if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0)
        die("KVM_GET_SREGS");
    uint64_t *gdt = (uint64_t *)(mem + GDT_BASE);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffULL; /* 0x08: 64-bit code, DPL 0 */
    gdt[2] = 0x00cf93000000ffffULL; /* 0x10: data */
    s.gdt.base = GDT_BASE;
    s.gdt.limit = 3 * 8 - 1;
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 11,
        .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 3;
    data.l = 0;
    data.db = 1;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = 0x1 | 0x2 | 0x20 | 0x80000000ULL;   /* PE MP NE PG */
    s.cr3 = PML4_BASE;
    s.cr4 = 0x20 | 0x200 | 0x400;               /* PAE OSFXSR OSXMMEXCPT */
    s.efer = 0x100 | 0x400 | 0x800;             /* LME LMA NXE */
    if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0)
        die("KVM_SET_SREGS");
}

static void setup_cpuid(int kvm, int vcpu)
{
    for (int n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            die("calloc");
        c->nent = n;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            if (ioctl(vcpu, KVM_SET_CPUID2, c) < 0)
                die("KVM_SET_CPUID2");
            free(c);
            return;
        }
        free(c);
        if (errno != E2BIG)
            die("KVM_GET_SUPPORTED_CPUID");
    }
    fail("%s", "KVM_GET_SUPPORTED_CPUID: too many entries");
}

static uint64_t tsc_hz(int vcpu)
{
    int khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
    if (khz > 0)
        return (uint64_t)khz * 1000;
    /* Fallback: calibrate the host TSC against CLOCK_MONOTONIC for 10 ms. */
    struct timespec a, b, d = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t0 = __rdtsc();
    nanosleep(&d, NULL);
    uint64_t t1 = __rdtsc();
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t ns = (b.tv_sec - a.tv_sec) * 1000000000ULL + b.tv_nsec - a.tv_nsec;
    return (t1 - t0) * 1000000000ULL / ns;
}

static void write_all(int fd, const uint8_t *p, uint64_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* like solo5-hvt: console errors are ignored */
        p += n;
        len -= n;
    }
}

int main(int argc, char **argv)
{
    uint64_t mem_mb = 512; /* solo5-hvt's default */
    int ai = 1;
    for (; ai < argc && !strncmp(argv[ai], "--", 2); ai++) {
        char *e;
        if (!strncmp(argv[ai], "--mem=", 6)) {
            errno = 0;
            mem_mb = strtoull(argv[ai] + 6, &e, 10);
            if (errno || *e || mem_mb < 2 || (mem_mb << 20) > MEM_MAX)
                fail("invalid %s (2..3072 MB)", argv[ai]);
        } else if (!strcmp(argv[ai], "--")) {
            ai++;
            break;
        } else {
            fail("unknown option %s", argv[ai]);
        }
    }
    if (ai >= argc) {
        fprintf(stderr, "usage: hvt-mini [--mem=MB] KERNEL.hvt [ARGS...]\n");
        return 1;
    }
    const char *kernel = argv[ai++];
    mem_size = mem_mb << 20;

    mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");

    uint64_t kernel_end, mft;
    uint64_t entry = load_elf(kernel, &kernel_end, &mft);

    /* Command line: ARGS joined by single spaces, NUL-terminated. */
    char *cmd = (char *)(mem + CMDLINE_BASE);
    size_t clen = 0;
    for (int i = ai; i < argc; i++) {
        size_t l = strlen(argv[i]);
        if (clen + l + 2 > CMDLINE_SIZE)
            fail("%s", "command line too long (8 KiB max)");
        if (i > ai)
            cmd[clen++] = ' ';
        memcpy(cmd + clen, argv[i], l);
        clen += l;
    }
    cmd[clen] = 0;

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
        fail("%s", "unexpected KVM API version");
    int vm;
    while ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0 && errno == EINTR)
        ;
    if (vm < 0)
        die("KVM_CREATE_VM");
    ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL); /* needed on some VMX hosts; optional */
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size,
        .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    setup_cpuid(kvm, vcpu);
    setup_page_tables();
    setup_sregs(vcpu);

    struct hvt_boot_info *bi = (struct hvt_boot_info *)(mem + BOOTINFO_BASE);
    bi->mem_size = mem_size;
    bi->kernel_end = kernel_end;
    bi->cpu_cycle_freq = tsc_hz(vcpu);
    bi->cmdline = CMDLINE_BASE;
    bi->mft = mft;

    struct kvm_regs r;
    memset(&r, 0, sizeof r);
    r.rip = entry;
    r.rflags = 0x2;
    r.rsp = mem_size - 8;
    r.rdi = BOOTINFO_BASE;
    if (ioctl(vcpu, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS");

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "hvt-mini: unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
        if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1) {
            fprintf(stderr, "hvt-mini: unexpected port I/O on 0x%x\n", run->io.port);
            return 1;
        }
        uint32_t gpa;
        memcpy(&gpa, (uint8_t *)run + run->io.data_offset, sizeof gpa);
        switch (run->io.port - HVT_IO_BASE) {
        case HC_WALLTIME: {
            struct hc_walltime *w = checked(gpa, sizeof *w, "WALLTIME argument");
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            w->nsecs = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
            break;
        }
        case HC_PUTS: {
            struct hc_puts *p = checked(gpa, sizeof *p, "PUTS argument");
            uint64_t data = p->data, len = p->len;
            write_all(1, checked(data, len, "PUTS buffer"), len);
            break;
        }
        case HC_POLL: {
            /* No devices: nothing can become ready; sleep until the deadline. */
            struct hc_poll *p = checked(gpa, sizeof *p, "POLL argument");
            uint64_t t = p->timeout_nsecs;
            struct timespec ts = {t / 1000000000ULL, t % 1000000000ULL};
            ppoll(NULL, 0, &ts, NULL);
            p->ready_set = 0;
            p->ret = 0;
            break;
        }
        case HC_HALT: {
            struct hc_halt *h = checked(gpa, sizeof *h, "HALT argument");
            return h->exit_status & 0xff;
        }
        default:
            fprintf(stderr, "hvt-mini: unhandled hypercall port 0x%x\n", run->io.port);
            return 1;
        }
    }
}
