// CKVM: the only C in Swiftlet. It exposes <linux/kvm.h> to Swift plus small static inline shims:
// ioctl request numbers as functions (Swift 6 cannot import function-like macros such as _IOW), a
// non-variadic ioctl (Swift cannot call variadic C functions), and kvm_run field accessors (the
// anonymous unions inside struct kvm_run are awkward and slow to reach from Swift).
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h> // KVM_IRQFD and KVM_IOEVENTFD take eventfds (Swift's Glibc lacks this header)
#include <sys/ioctl.h>

// MARK: ioctl calls

static inline int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
static inline int ckvm_ioctl_val(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }

// MARK: request numbers (pinned by KVMTests)

static inline unsigned long ckvm_KVM_GET_API_VERSION(void) { return KVM_GET_API_VERSION; }
static inline unsigned long ckvm_KVM_CREATE_VM(void) { return KVM_CREATE_VM; }
static inline unsigned long ckvm_KVM_CHECK_EXTENSION(void) { return KVM_CHECK_EXTENSION; }
static inline unsigned long ckvm_KVM_GET_VCPU_MMAP_SIZE(void) { return KVM_GET_VCPU_MMAP_SIZE; }
static inline unsigned long ckvm_KVM_GET_SUPPORTED_CPUID(void) { return KVM_GET_SUPPORTED_CPUID; }
static inline unsigned long ckvm_KVM_SET_USER_MEMORY_REGION(void) { return KVM_SET_USER_MEMORY_REGION; }
static inline unsigned long ckvm_KVM_CREATE_VCPU(void) { return KVM_CREATE_VCPU; }
static inline unsigned long ckvm_KVM_SET_TSS_ADDR(void) { return KVM_SET_TSS_ADDR; }
static inline unsigned long ckvm_KVM_SET_IDENTITY_MAP_ADDR(void) { return KVM_SET_IDENTITY_MAP_ADDR; }
static inline unsigned long ckvm_KVM_CREATE_IRQCHIP(void) { return KVM_CREATE_IRQCHIP; }
static inline unsigned long ckvm_KVM_CREATE_PIT2(void) { return KVM_CREATE_PIT2; }
static inline unsigned long ckvm_KVM_IRQ_LINE(void) { return KVM_IRQ_LINE; }
static inline unsigned long ckvm_KVM_RUN(void) { return KVM_RUN; }
static inline unsigned long ckvm_KVM_GET_REGS(void) { return KVM_GET_REGS; }
static inline unsigned long ckvm_KVM_SET_REGS(void) { return KVM_SET_REGS; }
static inline unsigned long ckvm_KVM_GET_SREGS(void) { return KVM_GET_SREGS; }
static inline unsigned long ckvm_KVM_SET_SREGS(void) { return KVM_SET_SREGS; }
static inline unsigned long ckvm_KVM_SET_CPUID2(void) { return KVM_SET_CPUID2; }
static inline unsigned long ckvm_KVM_GET_TSC_KHZ(void) { return KVM_GET_TSC_KHZ; }
static inline unsigned long ckvm_KVM_SET_MSRS(void) { return KVM_SET_MSRS; }
static inline unsigned long ckvm_KVM_GET_LAPIC(void) { return KVM_GET_LAPIC; }
static inline unsigned long ckvm_KVM_GET_FPU(void) { return KVM_GET_FPU; }
static inline unsigned long ckvm_KVM_SET_FPU(void) { return KVM_SET_FPU; }
static inline unsigned long ckvm_KVM_IRQFD(void) { return KVM_IRQFD; }
static inline unsigned long ckvm_KVM_IOEVENTFD(void) { return KVM_IOEVENTFD; }
static inline unsigned long ckvm_KVM_SIGNAL_MSI(void) { return KVM_SIGNAL_MSI; }
static inline unsigned long ckvm_KVM_SET_GSI_ROUTING(void) { return KVM_SET_GSI_ROUTING; }
static inline unsigned long ckvm_KVM_SET_GUEST_DEBUG(void) { return KVM_SET_GUEST_DEBUG; }
static inline unsigned long ckvm_KVM_TRANSLATE(void) { return KVM_TRANSLATE; }

// MARK: capabilities and constants

static inline int ckvm_KVM_API_VERSION(void) { return KVM_API_VERSION; }
static inline int ckvm_KVM_CAP_USER_MEMORY(void) { return KVM_CAP_USER_MEMORY; }
static inline int ckvm_KVM_CAP_IMMEDIATE_EXIT(void) { return KVM_CAP_IMMEDIATE_EXIT; }
static inline int ckvm_KVM_CAP_GET_TSC_KHZ(void) { return KVM_CAP_GET_TSC_KHZ; }
static inline int ckvm_KVM_CAP_NR_VCPUS(void) { return KVM_CAP_NR_VCPUS; }
static inline int ckvm_KVM_CAP_MAX_VCPUS(void) { return KVM_CAP_MAX_VCPUS; }
static inline int ckvm_KVM_CAP_NR_MEMSLOTS(void) { return KVM_CAP_NR_MEMSLOTS; }
static inline int ckvm_KVM_CAP_TSC_DEADLINE_TIMER(void) { return KVM_CAP_TSC_DEADLINE_TIMER; }
static inline int ckvm_KVM_CAP_IRQCHIP(void) { return KVM_CAP_IRQCHIP; }
static inline int ckvm_KVM_CAP_IRQ_ROUTING(void) { return KVM_CAP_IRQ_ROUTING; }
static inline int ckvm_KVM_CAP_IRQFD(void) { return KVM_CAP_IRQFD; }
static inline int ckvm_KVM_CAP_IOEVENTFD(void) { return KVM_CAP_IOEVENTFD; }
static inline int ckvm_KVM_CAP_SIGNAL_MSI(void) { return KVM_CAP_SIGNAL_MSI; }
static inline int ckvm_KVM_CAP_IRQFD_RESAMPLE(void) { return KVM_CAP_IRQFD_RESAMPLE; }
static inline int ckvm_KVM_CAP_IOEVENTFD_ANY_LENGTH(void) { return KVM_CAP_IOEVENTFD_ANY_LENGTH; }
static inline int ckvm_KVM_CAP_SET_GUEST_DEBUG(void) { return KVM_CAP_SET_GUEST_DEBUG; }
static inline unsigned int ckvm_KVM_MEM_READONLY(void) { return KVM_MEM_READONLY; }
static inline int ckvm_KVM_MAX_CPUID_ENTRIES(void) { return 256; }
// The flag macros below expand to enum shifts, which Swift cannot import.
static inline uint32_t ckvm_KVM_IRQFD_FLAG_DEASSIGN(void) { return KVM_IRQFD_FLAG_DEASSIGN; }
static inline uint32_t ckvm_KVM_IRQFD_FLAG_RESAMPLE(void) { return KVM_IRQFD_FLAG_RESAMPLE; }
static inline uint32_t ckvm_KVM_IOEVENTFD_FLAG_DATAMATCH(void) { return KVM_IOEVENTFD_FLAG_DATAMATCH; }
static inline uint32_t ckvm_KVM_IOEVENTFD_FLAG_PIO(void) { return KVM_IOEVENTFD_FLAG_PIO; }
static inline uint32_t ckvm_KVM_IOEVENTFD_FLAG_DEASSIGN(void) { return KVM_IOEVENTFD_FLAG_DEASSIGN; }
static inline uint32_t ckvm_KVM_IRQ_ROUTING_IRQCHIP(void) { return KVM_IRQ_ROUTING_IRQCHIP; }
static inline uint32_t ckvm_KVM_IRQ_ROUTING_MSI(void) { return KVM_IRQ_ROUTING_MSI; }
static inline uint32_t ckvm_KVM_IRQCHIP_PIC_MASTER(void) { return KVM_IRQCHIP_PIC_MASTER; }
static inline uint32_t ckvm_KVM_IRQCHIP_PIC_SLAVE(void) { return KVM_IRQCHIP_PIC_SLAVE; }
static inline uint32_t ckvm_KVM_IRQCHIP_IOAPIC(void) { return KVM_IRQCHIP_IOAPIC; }
// Swiftlet's own bound on one KVM_SET_GSI_ROUTING table (KVM itself accepts up to KVM_MAX_IRQ_ROUTES).
static inline uint32_t ckvm_MAX_GSI_ROUTES(void) { return 1024; }

// MARK: exit reasons

static inline uint32_t ckvm_KVM_EXIT_UNKNOWN(void) { return KVM_EXIT_UNKNOWN; }
static inline uint32_t ckvm_KVM_EXIT_IO(void) { return KVM_EXIT_IO; }
static inline uint32_t ckvm_KVM_EXIT_HLT(void) { return KVM_EXIT_HLT; }
static inline uint32_t ckvm_KVM_EXIT_MMIO(void) { return KVM_EXIT_MMIO; }
static inline uint32_t ckvm_KVM_EXIT_SHUTDOWN(void) { return KVM_EXIT_SHUTDOWN; }
static inline uint32_t ckvm_KVM_EXIT_FAIL_ENTRY(void) { return KVM_EXIT_FAIL_ENTRY; }
static inline uint32_t ckvm_KVM_EXIT_INTR(void) { return KVM_EXIT_INTR; }
static inline uint32_t ckvm_KVM_EXIT_INTERNAL_ERROR(void) { return KVM_EXIT_INTERNAL_ERROR; }
static inline uint32_t ckvm_KVM_EXIT_SYSTEM_EVENT(void) { return KVM_EXIT_SYSTEM_EVENT; }
static inline uint32_t ckvm_KVM_EXIT_DEBUG(void) { return KVM_EXIT_DEBUG; }
static inline uint8_t ckvm_KVM_EXIT_IO_OUT(void) { return KVM_EXIT_IO_OUT; }

// MARK: struct kvm_run accessors

static inline uint32_t ckvm_run_exit_reason(const struct kvm_run *r) { return r->exit_reason; }
static inline void ckvm_run_set_immediate_exit(struct kvm_run *r, uint8_t v) {
    __atomic_store_n(&r->immediate_exit, v, __ATOMIC_SEQ_CST);
}
static inline uint8_t ckvm_run_immediate_exit(const struct kvm_run *r) {
    return __atomic_load_n(&r->immediate_exit, __ATOMIC_SEQ_CST);
}
static inline uint8_t ckvm_run_io_direction(const struct kvm_run *r) { return r->io.direction; }
static inline uint8_t ckvm_run_io_size(const struct kvm_run *r) { return r->io.size; }
static inline uint16_t ckvm_run_io_port(const struct kvm_run *r) { return r->io.port; }
static inline uint32_t ckvm_run_io_count(const struct kvm_run *r) { return r->io.count; }
static inline uint64_t ckvm_run_io_data_offset(const struct kvm_run *r) { return r->io.data_offset; }
static inline uint64_t ckvm_run_mmio_phys_addr(const struct kvm_run *r) { return r->mmio.phys_addr; }
static inline uint8_t *ckvm_run_mmio_data(struct kvm_run *r) { return r->mmio.data; }
static inline uint32_t ckvm_run_mmio_len(const struct kvm_run *r) { return r->mmio.len; }
static inline uint8_t ckvm_run_mmio_is_write(const struct kvm_run *r) { return r->mmio.is_write; }
static inline uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *r) {
    return r->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t ckvm_run_internal_suberror(const struct kvm_run *r) { return r->internal.suberror; }
static inline uint32_t ckvm_run_internal_ndata(const struct kvm_run *r) { return r->internal.ndata; }
// internal.data[i], 0 past the 16 entries the structure holds.
static inline uint64_t ckvm_run_internal_data(const struct kvm_run *r, uint32_t i) { return i < 16 ? r->internal.data[i] : 0; }
static inline uint32_t ckvm_run_system_event_type(const struct kvm_run *r) { return r->system_event.type; }
static inline uint32_t ckvm_run_debug_exception(const struct kvm_run *r) { return r->debug.arch.exception; }
static inline uint64_t ckvm_run_debug_pc(const struct kvm_run *r) { return r->debug.arch.pc; }
static inline uint64_t ckvm_run_debug_dr6(const struct kvm_run *r) { return r->debug.arch.dr6; }
static inline uint64_t ckvm_run_debug_dr7(const struct kvm_run *r) { return r->debug.arch.dr7; }

// MARK: small multi-step shims for structs with flexible arrays or packed register pages

// KVM_IRQ_LINE: sets ISA/GSI line `irq` to `level` on the in-kernel PIC and IOAPIC.
static inline int ckvm_irq_line(int vmfd, uint32_t irq, uint32_t level) {
    struct kvm_irq_level l;
    memset(&l, 0, sizeof l);
    l.irq = irq;
    l.level = level;
    return ioctl(vmfd, KVM_IRQ_LINE, &l);
}

// KVM_CREATE_PIT2 with default flags.
static inline int ckvm_create_pit2(int vmfd) {
    struct kvm_pit_config c;
    memset(&c, 0, sizeof c);
    return ioctl(vmfd, KVM_CREATE_PIT2, &c);
}

// KVM_SET_MSRS for `n` (index, value) pairs; returns how many were set or -1.
static inline int ckvm_set_msrs(int vcpufd, const uint32_t *indices, const uint64_t *values, uint32_t n) {
    if (n > 64) return -1;
    // struct kvm_msrs ends in a flexible array: room for 64 entries follows it in one buffer
    // (aligned for the 64-bit entries), not a struct that puts it before other fields.
    uint64_t buffer[(sizeof(struct kvm_msrs) + 64 * sizeof(struct kvm_msr_entry) + 7) / 8];
    memset(buffer, 0, sizeof buffer);
    struct kvm_msrs *m = (struct kvm_msrs *)buffer;
    m->nmsrs = n;
    for (uint32_t i = 0; i < n; i++) { m->entries[i].index = indices[i]; m->entries[i].data = values[i]; }
    return ioctl(vcpufd, KVM_SET_MSRS, m);
}

// KVM_GET_MSRS for `n` indices (at most 64); values[i] receives MSR indices[i]. Returns how many
// were read or -1.
static inline int ckvm_get_msrs(int vcpufd, const uint32_t *indices, uint64_t *values, uint32_t n) {
    if (n > 64) return -1;
    uint64_t buffer[(sizeof(struct kvm_msrs) + 64 * sizeof(struct kvm_msr_entry) + 7) / 8];
    memset(buffer, 0, sizeof buffer);
    struct kvm_msrs *m = (struct kvm_msrs *)buffer;
    m->nmsrs = n;
    for (uint32_t i = 0; i < n; i++) m->entries[i].index = indices[i];
    int got = ioctl(vcpufd, KVM_GET_MSRS, m);
    for (int i = 0; i < got && i < (int)n; i++) values[i] = m->entries[i].data;
    return got;
}

// KVM_INTERRUPT: queues external interrupt `vector` (only without the in-kernel irqchip).
static inline int ckvm_interrupt(int vcpufd, uint32_t vector) {
    struct kvm_interrupt i = { .irq = vector };
    return ioctl(vcpufd, KVM_INTERRUPT, &i);
}

// KVM_SET_FPU with the architectural reset values Linux expects (FCW 0x37F, MXCSR 0x1F80).
static inline int ckvm_init_fpu(int vcpufd) {
    struct kvm_fpu f;
    memset(&f, 0, sizeof f);
    f.fcw = 0x37f;
    f.mxcsr = 0x1f80;
    return ioctl(vcpufd, KVM_SET_FPU, &f);
}

// KVM_SET_GUEST_DEBUG: `control` is a set of KVM_GUESTDBG_* flags (see ckvm_guestdbg_flags),
// `debugreg` the eight debug registers (DR0-DR3 addresses, DR6, DR7) used with USE_HW_BP.
static inline int ckvm_set_guest_debug(int vcpufd, uint32_t control, const uint64_t debugreg[8]) {
    struct kvm_guest_debug d;
    memset(&d, 0, sizeof d);
    d.control = control;
    for (int i = 0; i < 8; i++) d.arch.debugreg[i] = debugreg[i];
    return ioctl(vcpufd, KVM_SET_GUEST_DEBUG, &d);
}
// The KVM_GUESTDBG_* flags, in the order enable, single-step, software breakpoints, hardware ones.
static inline uint32_t ckvm_GUESTDBG_ENABLE(void) { return KVM_GUESTDBG_ENABLE; }
static inline uint32_t ckvm_GUESTDBG_SINGLESTEP(void) { return KVM_GUESTDBG_SINGLESTEP; }
static inline uint32_t ckvm_GUESTDBG_USE_SW_BP(void) { return KVM_GUESTDBG_USE_SW_BP; }
static inline uint32_t ckvm_GUESTDBG_USE_HW_BP(void) { return KVM_GUESTDBG_USE_HW_BP; }
// KVM_TRANSLATE: the guest-physical address of guest-virtual `gva` under the vCPU's current paging.
// Returns 0 and sets *gpa, 1 when the page is not mapped, -1 (errno) when KVM failed.
static inline int ckvm_translate(int vcpufd, uint64_t gva, uint64_t *gpa, uint8_t *writeable) {
    struct kvm_translation t;
    memset(&t, 0, sizeof t);
    t.linear_address = gva;
    if (ioctl(vcpufd, KVM_TRANSLATE, &t) < 0) return -1;
    if (!t.valid) return 1;
    *gpa = t.physical_address;
    *writeable = t.writeable;
    return 0;
}
// Programs the local APIC's LINT0 as ExtINT (the PIC) and LINT1 as NMI, as a PC BIOS does.
static inline int ckvm_set_lint(int vcpufd) {
    struct kvm_lapic_state s;
    if (ioctl(vcpufd, KVM_GET_LAPIC, &s) < 0) return -1;
    uint32_t lint0, lint1;
    memcpy(&lint0, &s.regs[0x350], 4);
    memcpy(&lint1, &s.regs[0x360], 4);
    lint0 = (lint0 & ~0x700u) | (7u << 8);
    lint1 = (lint1 & ~0x700u) | (4u << 8);
    memcpy(&s.regs[0x350], &lint0, 4);
    memcpy(&s.regs[0x360], &lint1, 4);
    return ioctl(vcpufd, KVM_SET_LAPIC, &s);
}

// MARK: struct kvm_cpuid2 (flexible array member)

static inline unsigned long ckvm_cpuid2_size(uint32_t entries) {
    return sizeof(struct kvm_cpuid2) + entries * sizeof(struct kvm_cpuid_entry2);
}
static inline struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *c) { return c->entries; }

// MARK: struct kvm_irq_routing (flexible array member of unions)

// Bytes needed for a routing table of `entries` entries.
static inline unsigned long ckvm_irq_routing_size(uint32_t entries) {
    return sizeof(struct kvm_irq_routing) + entries * sizeof(struct kvm_irq_routing_entry);
}

// Fills the zeroed buffer `r` (at least ckvm_irq_routing_size(n) bytes) from parallel arrays: entry i
// routes GSI gsis[i] either to pin pins[i] of irqchip chips[i] (types[i] == KVM_IRQ_ROUTING_IRQCHIP) or
// to the MSI message (addresses[i], datas[i]) (types[i] == KVM_IRQ_ROUTING_MSI); the arrays a type does
// not use are ignored at that index. Returns 0, or -1 (nothing to send) for too many entries or an
// unknown type.
static inline int ckvm_irq_routing_fill(struct kvm_irq_routing *r, uint32_t n, const uint32_t *gsis,
                                        const uint32_t *types, const uint32_t *chips, const uint32_t *pins,
                                        const uint64_t *addresses, const uint32_t *datas) {
    if (n > ckvm_MAX_GSI_ROUTES()) return -1;
    r->nr = n;
    r->flags = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct kvm_irq_routing_entry *e = &r->entries[i];
        memset(e, 0, sizeof *e);
        e->gsi = gsis[i];
        e->type = types[i];
        if (types[i] == KVM_IRQ_ROUTING_IRQCHIP) {
            e->u.irqchip.irqchip = chips[i];
            e->u.irqchip.pin = pins[i];
        } else if (types[i] == KVM_IRQ_ROUTING_MSI) {
            e->u.msi.address_lo = (uint32_t)addresses[i];
            e->u.msi.address_hi = (uint32_t)(addresses[i] >> 32);
            e->u.msi.data = datas[i];
        } else {
            return -1;
        }
    }
    return 0;
}

// Reads back entry `i` of a filled table (for tests): type, gsi, and the irqchip or MSI fields.
static inline void ckvm_irq_routing_entry_at(const struct kvm_irq_routing *r, uint32_t i, uint32_t *gsi,
                                             uint32_t *type, uint32_t *chip, uint32_t *pin,
                                             uint64_t *address, uint32_t *data) {
    const struct kvm_irq_routing_entry *e = &r->entries[i];
    *gsi = e->gsi;
    *type = e->type;
    *chip = e->u.irqchip.irqchip;
    *pin = e->u.irqchip.pin;
    *address = ((uint64_t)e->u.msi.address_hi << 32) | e->u.msi.address_lo;
    *data = e->u.msi.data;
}

#endif
