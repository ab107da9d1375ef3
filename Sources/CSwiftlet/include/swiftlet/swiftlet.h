/*
 * libswiftlet: Swiftlet's C ABI (docs/abi.md is the specification).
 *
 * Version 1, machine level, in the manner of NetBSD's libnvmm: machines, guest-physical memory
 * mappings, vCPUs, register state, typed exits, interrupt injection, GVA->GPA translation and two
 * assists that run only when the caller asks (swiftlet_assist_io, swiftlet_assist_mem).
 *
 * Compatibility policy (docs/abi.md, "Compatibility"): a function, once published, never changes
 * or disappears; new behaviour comes as new functions under a new symbol version (SWIFTLET_1.0,
 * SWIFTLET_1.1, ...); a struct passed by pointer starts with `size` (the caller sets it to
 * sizeof the struct it was compiled with) and only ever grows at its end. A client built against
 * this header keeps working with every later libswiftlet.so.1.
 *
 * x86-64 Linux only (KVM). Every function returns a status: SWIFTLET_OK (0) or a negative
 * SWIFTLET_E_* code; swiftlet_last_error() gives the calling thread's last message.
 */
#ifndef SWIFTLET_SWIFTLET_H
#define SWIFTLET_SWIFTLET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes; pass it to swiftlet_open. Version N's functions are
 * exported under the symbol version SWIFTLET_1.(N-1): version 1 is SWIFTLET_1.0 (machine level),
 * version 2 adds SWIFTLET_1.1 (VM level). */
#define SWIFTLET_ABI_VERSION 2

/* Status codes. */
#define SWIFTLET_OK 0
#define SWIFTLET_E_INVALID (-1)      /* a NULL pointer, an unknown flag, a value out of range */
#define SWIFTLET_E_VERSION (-2)      /* swiftlet_open: version 0, or newer than this library */
#define SWIFTLET_E_NOT_OPEN (-3)     /* swiftlet_open has not succeeded in this process */
#define SWIFTLET_E_HANDLE (-4)       /* a handle destroyed, never issued, or of the wrong kind */
#define SWIFTLET_E_STRUCT_SIZE (-5)  /* a struct's size field is smaller than version 1's */
#define SWIFTLET_E_BUSY (-6)         /* the vCPU is running (or being served) on another thread */
#define SWIFTLET_E_OVERLAP (-7)      /* the mapping overlaps an existing one */
#define SWIFTLET_E_ALIGNMENT (-8)    /* an address, host pointer or size is not page-aligned */
#define SWIFTLET_E_NOT_FOUND (-9)    /* no such mapping, or the guest-virtual address is unmapped */
#define SWIFTLET_E_WRONG_EXIT (-10)  /* an assist called on an exit of another reason */
#define SWIFTLET_E_LIMIT (-11)       /* too many machines, vCPUs or mappings */
#define SWIFTLET_E_UNAVAILABLE (-12) /* /dev/kvm is missing or not permitted */
#define SWIFTLET_E_KERNEL (-13)      /* KVM refused the request (the message names the ioctl and errno) */
#define SWIFTLET_E_UNSUPPORTED (-14) /* the instruction or state is outside what the library handles */
#define SWIFTLET_E_GUEST (-15)       /* the guest's state is invalid for the request (bad page tables, RIP outside RAM) */
/* Since version 2: */
#define SWIFTLET_E_CONFIG (-16)      /* the VM's configuration is refused (the message says why) */
#define SWIFTLET_E_STATE (-17)       /* the VM is not in a state that allows the request */
#define SWIFTLET_E_TIMEOUT (-18)     /* swiftlet_vm_wait: the VM still runs */

/* Handles: nonzero values the library issues; 0 is never a valid handle. A handle of one kind
 * passed where another kind is expected, or used after it was destroyed, gives SWIFTLET_E_HANDLE. */
typedef uint64_t swiftlet_machine_t;
typedef uint64_t swiftlet_vcpu_t;

/* ------------------------------------------------------------------------------------------ */
/* Library */

/* Declares the ABI version the client was written for (SWIFTLET_ABI_VERSION of its header).
 * Must succeed before any call but swiftlet_abi_version and swiftlet_last_error. Calling it
 * again is allowed (with any supported version). */
int swiftlet_open(uint32_t abi_version);

/* The newest ABI version this library implements. */
uint32_t swiftlet_abi_version(void);

/* Copies the calling thread's last error message (one line, NUL-terminated, truncated to fit)
 * into buffer and returns its length (at most 511), as snprintf does; 0 when the last call
 * succeeded.
 * buffer may be NULL when size is 0. */
size_t swiftlet_last_error(char *buffer, size_t size);

/* Assists this library offers (swiftlet_capabilities.assists). */
#define SWIFTLET_ASSIST_IO (1u << 0)
#define SWIFTLET_ASSIST_MEM (1u << 1)

/* What this library and the running kernel allow. */
struct swiftlet_capabilities {
    uint32_t size;              /* in: sizeof(struct swiftlet_capabilities) */
    uint32_t abi_version;       /* the newest ABI version implemented */
    uint32_t max_machines;      /* machines one process may hold at once */
    uint32_t max_vcpus;         /* vCPUs per machine (KVM_CAP_MAX_VCPUS) */
    uint32_t recommended_vcpus; /* vCPUs per machine KVM recommends (KVM_CAP_NR_VCPUS) */
    uint32_t max_mappings;      /* memory mappings per machine (KVM_CAP_NR_MEMSLOTS) */
    uint64_t page_size;         /* alignment of every mapping's address, pointer and size */
    uint64_t assists;           /* SWIFTLET_ASSIST_* */
};                              /* 40 bytes */

int swiftlet_capabilities(struct swiftlet_capabilities *capabilities);

/* ------------------------------------------------------------------------------------------ */
/* Machines and memory */

/* Flags of swiftlet_machine_create. */
#define SWIFTLET_MACHINE_IRQCHIP (1u << 0) /* in-kernel PIC, IOAPIC, local APICs and PIT */

int swiftlet_machine_create(uint32_t flags, swiftlet_machine_t *machine);

/* Destroys the machine and every vCPU it still has (their handles become invalid). Fails with
 * SWIFTLET_E_BUSY while one of its vCPUs runs. The caller's memory is not freed. */
int swiftlet_machine_destroy(swiftlet_machine_t machine);

/* Flags of swiftlet_machine_map. */
#define SWIFTLET_MAP_READONLY (1u << 0) /* guest writes become MMIO exits */

/* Maps size bytes of the caller's memory at host into guest-physical [gpa, gpa + size). All
 * three page-aligned, size nonzero; no overlap with an existing mapping. The memory must stay
 * valid until it is unmapped or the machine is destroyed. */
int swiftlet_machine_map(swiftlet_machine_t machine, uint64_t gpa, void *host, uint64_t size, uint32_t flags);

/* Removes the mapping that starts at gpa and has exactly this size. */
int swiftlet_machine_unmap(swiftlet_machine_t machine, uint64_t gpa, uint64_t size);

/* Drives interrupt line `line` (ISA IRQ or GSI) of the in-kernel irqchip; needs
 * SWIFTLET_MACHINE_IRQCHIP. Safe from any thread. */
int swiftlet_machine_irq_line(swiftlet_machine_t machine, uint32_t line, uint32_t level);

/* ------------------------------------------------------------------------------------------ */
/* vCPUs and their state */

/* Creates vCPU number `index` (0 <= index < max_vcpus), with the CPUID KVM supports. */
int swiftlet_vcpu_create(swiftlet_machine_t machine, uint32_t index, swiftlet_vcpu_t *vcpu);

/* Fails with SWIFTLET_E_BUSY while the vCPU runs. */
int swiftlet_vcpu_destroy(swiftlet_vcpu_t vcpu);

/* General-purpose registers, RIP and RFLAGS. */
struct swiftlet_regs {
    uint32_t size; /* in: sizeof(struct swiftlet_regs) */
    uint32_t reserved;
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
}; /* 152 bytes */

/* A segment register with its hidden part (booleans are 0 or 1). */
struct swiftlet_segment {
    uint64_t base;
    uint32_t limit; /* in bytes */
    uint16_t selector;
    uint8_t type, present, dpl, db, s, l, g, avl, unusable, reserved;
}; /* 24 bytes */

/* GDTR or IDTR. */
struct swiftlet_dtable {
    uint64_t base;
    uint16_t limit;
    uint16_t reserved[3];
}; /* 16 bytes */

/* Segment, descriptor-table and control registers. */
struct swiftlet_sregs {
    uint32_t size; /* in: sizeof(struct swiftlet_sregs) */
    uint32_t reserved;
    struct swiftlet_segment cs, ds, es, fs, gs, ss, tr, ldt;
    struct swiftlet_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
}; /* 288 bytes */

/* x87 and SSE state (the FXSAVE fields). */
struct swiftlet_fpu {
    uint32_t size; /* in: sizeof(struct swiftlet_fpu) */
    uint32_t mxcsr;
    uint8_t st[8][16]; /* ST0-ST7: 10 bytes each, 6 bytes of padding */
    uint16_t fcw, fsw;
    uint8_t ftwx, reserved;
    uint16_t last_opcode;
    uint64_t last_ip, last_dp;
    uint8_t xmm[16][16];
}; /* 416 bytes */

/* One model-specific register. */
struct swiftlet_msr {
    uint32_t index;
    uint32_t reserved;
    uint64_t value;
}; /* 16 bytes */

int swiftlet_vcpu_get_regs(swiftlet_vcpu_t vcpu, struct swiftlet_regs *regs);
int swiftlet_vcpu_set_regs(swiftlet_vcpu_t vcpu, const struct swiftlet_regs *regs);
int swiftlet_vcpu_get_sregs(swiftlet_vcpu_t vcpu, struct swiftlet_sregs *sregs);
int swiftlet_vcpu_set_sregs(swiftlet_vcpu_t vcpu, const struct swiftlet_sregs *sregs);
int swiftlet_vcpu_get_fpu(swiftlet_vcpu_t vcpu, struct swiftlet_fpu *fpu);
int swiftlet_vcpu_set_fpu(swiftlet_vcpu_t vcpu, const struct swiftlet_fpu *fpu);
/* count entries (1..64); get fills each entry's value from its index. */
int swiftlet_vcpu_get_msrs(swiftlet_vcpu_t vcpu, struct swiftlet_msr *msrs, uint32_t count);
int swiftlet_vcpu_set_msrs(swiftlet_vcpu_t vcpu, const struct swiftlet_msr *msrs, uint32_t count);

/* ------------------------------------------------------------------------------------------ */
/* Running */

/* Exit reasons. */
#define SWIFTLET_EXIT_NONE 0
#define SWIFTLET_EXIT_IO 1             /* port I/O: u.io */
#define SWIFTLET_EXIT_MMIO 2           /* a guest access to unmapped (or read-only) memory: u.mmio */
#define SWIFTLET_EXIT_HALT 3           /* HLT, without an in-kernel local APIC */
#define SWIFTLET_EXIT_SHUTDOWN 4       /* triple fault */
#define SWIFTLET_EXIT_HYPERCALL 5      /* reserved: KVM_EXIT_HYPERCALL, never enabled in version 1 */
#define SWIFTLET_EXIT_INTERNAL_ERROR 6 /* KVM could not emulate: u.internal */
#define SWIFTLET_EXIT_INTERRUPTED 7    /* swiftlet_vcpu_kick, or a signal; no guest state changed */
#define SWIFTLET_EXIT_FAILED_ENTRY 8   /* the hardware refused the guest state: u.failed_entry_reason */
#define SWIFTLET_EXIT_SYSTEM_EVENT 9   /* reset, shutdown or crash requested by the guest: u.system_event_type */
#define SWIFTLET_EXIT_DEBUG 10         /* a debug trap (reserved in version 1) */
#define SWIFTLET_EXIT_UNKNOWN 11       /* a KVM exit this library does not know: u.unknown_kvm_reason */

/* A port-I/O exit. */
struct swiftlet_exit_io {
    uint16_t port;
    uint8_t width;    /* bytes per item: 1, 2 or 4 */
    uint8_t is_write; /* OUT */
    uint32_t count;   /* items: more than 1 for INS/OUTS with REP */
    uint8_t *data;    /* width * count bytes */
}; /* 16 bytes */

/* An MMIO exit (KVM decoded the instruction). */
struct swiftlet_exit_mmio {
    uint64_t gpa;
    uint32_t width; /* 1 to 8 bytes */
    uint32_t is_write;
    uint8_t *data; /* width bytes */
}; /* 24 bytes */

/* A hypercall exit (reserved: version 1 never enables KVM_EXIT_HYPERCALL). */
struct swiftlet_exit_hypercall {
    uint64_t nr;
    uint64_t args[6];
}; /* 56 bytes */

/* KVM could not handle something. */
struct swiftlet_exit_internal {
    uint32_t suberror; /* 1: emulation failure */
    uint32_t ndata;    /* words of data KVM filled */
    uint64_t data[16];
}; /* 136 bytes */

/* Why swiftlet_vcpu_run returned. The data pointers point into the vCPU's shared run area:
 * valid until the next run of that vCPU; write into them to answer an IN or an MMIO read. */
struct swiftlet_exit {
    uint32_t size;   /* in: sizeof(struct swiftlet_exit) */
    uint32_t reason; /* SWIFTLET_EXIT_* */
    union {
        struct swiftlet_exit_io io;
        struct swiftlet_exit_mmio mmio;
        struct swiftlet_exit_hypercall hypercall;
        struct swiftlet_exit_internal internal;
        uint64_t failed_entry_reason; /* the hardware's code */
        uint32_t system_event_type;   /* KVM_SYSTEM_EVENT_* */
        uint32_t unknown_kvm_reason;  /* kvm_run.exit_reason */
        uint64_t reserved[32];        /* the union is 256 bytes, for later exit kinds */
    } u;
}; /* 264 bytes */

/* Runs the vCPU on the calling thread until the next exit. One thread at a time: a second
 * concurrent call gets SWIFTLET_E_BUSY. */
int swiftlet_vcpu_run(swiftlet_vcpu_t vcpu, struct swiftlet_exit *exit);

/* Makes the vCPU's current or next run return SWIFTLET_EXIT_INTERRUPTED. Safe from any thread.
 * The library uses SIGUSR2 to interrupt a thread inside KVM_RUN (no-op handler, no SA_RESTART). */
int swiftlet_vcpu_kick(swiftlet_vcpu_t vcpu);

/* Queues external interrupt `vector` (KVM_INTERRUPT), for machines without the in-kernel irqchip. */
int swiftlet_vcpu_inject_interrupt(swiftlet_vcpu_t vcpu, uint32_t vector);

/* Translates a guest-virtual address through the vCPU's current page tables. */
int swiftlet_vcpu_translate(swiftlet_vcpu_t vcpu, uint64_t gva, uint64_t *gpa);

/* ------------------------------------------------------------------------------------------ */
/* Assists: called by the client on an exit it chose to have served; nothing runs them implicitly */

/* One port access. For an OUT, data holds the value; for an IN, the callback fills data. */
struct swiftlet_io_access {
    uint16_t port;
    uint8_t width; /* 1, 2 or 4 */
    uint8_t is_write;
    uint8_t data[4];
}; /* 8 bytes */

typedef void (*swiftlet_io_callback)(void *context, struct swiftlet_io_access *access);

/* Serves a SWIFTLET_EXIT_IO exit as single accesses: one callback per item of a string (REP
 * INS/OUTS) exit, in order; IN data goes where the guest's next run picks it up. */
int swiftlet_assist_io(swiftlet_vcpu_t vcpu, const struct swiftlet_exit *exit,
                       swiftlet_io_callback callback, void *context);

/* One memory access. For a write, data holds the value; for a read, the callback fills data. */
struct swiftlet_mem_access {
    uint64_t gpa;
    uint32_t width; /* 1, 2, 4 or 8 */
    uint32_t is_write;
    uint8_t data[8];
}; /* 24 bytes */

typedef void (*swiftlet_mem_callback)(void *context, struct swiftlet_mem_access *access);

/* Serves an MMIO access. On SWIFTLET_EXIT_MMIO, KVM has decoded the instruction: the callback
 * gets the access, and KVM completes the instruction (registers, read data) at the next run. On
 * SWIFTLET_EXIT_INTERNAL_ERROR with suberror 1 (KVM could not emulate it), the library fetches
 * the instruction at RIP through the guest's page tables, decodes it (Swiftlet's x86 decoder:
 * MOV, MOVZX/MOVSX, arithmetic and logic, string MOVS/STOS/LODS with REP, ...), performs each
 * access to a non-RAM address through the callback, updates the registers and moves RIP past
 * it. Any other exit: SWIFTLET_E_WRONG_EXIT. */
int swiftlet_assist_mem(swiftlet_vcpu_t vcpu, const struct swiftlet_exit *exit,
                        swiftlet_mem_callback callback, void *context);

/* ------------------------------------------------------------------------------------------ */
/* VM level (version 2, SWIFTLET_1.1), in the manner of libkrun: a whole microVM, the VMM that
 * `swiftlet run` and `swiftlet api` run, inside the caller's process. Every function is safe
 * from any thread. The VM's threads block SIGINT, SIGTERM, SIGHUP and SIGUSR1 and the library
 * uses one real-time signal to kick vCPUs; the caller's own signal handling is left alone. */

typedef uint64_t swiftlet_vm_t;

/* Where a VM is in its life (swiftlet_vm_state). Stopped and crashed are final. */
#define SWIFTLET_VM_CREATED 0
#define SWIFTLET_VM_RUNNING 1
#define SWIFTLET_VM_PAUSED 2
#define SWIFTLET_VM_STOPPED 3 /* the guest ended, or swiftlet_vm_stop */
#define SWIFTLET_VM_CRASHED 4 /* the guest or the VMM failed (the message went to stderr) */

/* Builds a VM from a Firecracker JSON config, the document `swiftlet run --config-file` reads
 * (boot-source, machine-config, drives, network-interfaces, vsock): a Linux kernel (bzImage or
 * PVH ELF) or a Solo5 hvt unikernel, told apart by the kernel image. Every file is opened and
 * every check made here; SWIFTLET_E_CONFIG with a one-line message if any fails. `json` need
 * not be NUL-terminated. */
int swiftlet_vm_create(const char *json, size_t length, swiftlet_vm_t *vm);

/* The VM's console as a connected stream socket: the guest's console output to read, and (Linux
 * guests) serial input to write. The caller owns *fd and closes it. At most once, before
 * swiftlet_vm_start; without it the console is the process's standard output. The VM writes
 * whole: a caller that stops reading stalls the guest's console writes, never loses them. */
int swiftlet_vm_console(swiftlet_vm_t vm, int *fd);

/* Starts the VM on threads of its own and returns at once. Once per VM. */
int swiftlet_vm_start(swiftlet_vm_t vm);

/* Parks every vCPU outside the guest (returns once none runs guest code) / lets them go on. */
int swiftlet_vm_pause(swiftlet_vm_t vm);
int swiftlet_vm_resume(swiftlet_vm_t vm);

/* Ends the run as `swiftlet run` ends on SIGTERM: the exit status is then 143. Returns at once;
 * swiftlet_vm_wait waits for the end. No effect on a VM that already ended. */
int swiftlet_vm_stop(swiftlet_vm_t vm);

/* The VM's SWIFTLET_VM_* state. */
int swiftlet_vm_state(swiftlet_vm_t vm, uint32_t *state);

/* Waits up to timeout_ms milliseconds (-1: no limit) for the run to end and gives its exit
 * status as `swiftlet run` exits: the guest's own status (a unikernel's solo5_exit, a Linux
 * guest's reported status), 0 after poweroff or reboot, 128+N after a stop (143 for
 * swiftlet_vm_stop), 1 after a failure. SWIFTLET_E_TIMEOUT if it still runs; SWIFTLET_E_STATE
 * if it was never started. */
int swiftlet_vm_wait(swiftlet_vm_t vm, int32_t timeout_ms, int *exit_status);

/* Stops the VM if it runs, waits for its end and frees it; the handle is then invalid. */
int swiftlet_vm_destroy(swiftlet_vm_t vm);

/* ------------------------------------------------------------------------------------------ */
/* Extension helpers (version 2, SWIFTLET_1.1): for writing an extension process, the other end of
 * `swiftlet run --extension PROGRAM` (docs/abi.md, "Extensions"). They speak the protocol on the
 * descriptor the VMM passed (SWIFTLET_EXTENSION_FD, normally 3) and need no swiftlet_open. One
 * thread at a time per channel. A VMM that ended gives SWIFTLET_E_STATE. */

#define SWIFTLET_EXT_PORT 0 /* port I/O */
#define SWIFTLET_EXT_MMIO 1 /* guest-physical MMIO, inside 0xF0000000-0xFEBFFFFF */

/* One guest access to a claimed range: answer it with swiftlet_ext_complete. */
struct swiftlet_ext_access {
    uint64_t id;
    uint64_t address; /* the port or guest-physical address, absolute */
    uint64_t value;   /* a write's data */
    uint32_t width;   /* 1, 2, 4 or 8 bytes */
    uint32_t space;   /* SWIFTLET_EXT_PORT or SWIFTLET_EXT_MMIO */
    uint32_t is_write;
    uint32_t reserved;
}; /* 40 bytes */

/* Says hello (`name`, at most 64 bytes) and waits for the VMM's welcome; *channel is the
 * channel: the descriptor SWIFTLET_EXTENSION_FD names (a program the VMM started), else a new
 * connection to the socket SWIFTLET_EXTENSION_SOCKET names (`--extension listen=PATH`; the
 * caller closes it). */
int swiftlet_ext_connect(const char *name, int *channel);

/* Claims `length` ports or bytes of MMIO from `base`; SWIFTLET_E_OVERLAP if refused (the VMM
 * then fails the device). Before swiftlet_ext_ready only. */
int swiftlet_ext_register(int channel, uint32_t space, uint64_t base, uint64_t length);

/* Ends the registrations: the VM may start. */
int swiftlet_ext_ready(int channel);

/* Waits for the next guest access. */
int swiftlet_ext_next_access(int channel, struct swiftlet_ext_access *access);

/* Answers an access; `value` is a read's data (ignored for a write). Every access must be
 * answered, within the VMM's timeout (1 s unless --extension says timeout_ms=). */
int swiftlet_ext_complete(int channel, const struct swiftlet_ext_access *access, uint64_t value);

/* Reads or writes 1 to 4096 bytes of guest memory, checked by the VMM: SWIFTLET_E_GUEST when
 * the range is not guest RAM. */
int swiftlet_ext_read_memory(int channel, uint64_t gpa, void *buffer, uint32_t length);
int swiftlet_ext_write_memory(int channel, uint64_t gpa, const void *buffer, uint32_t length);

/* Sets the interrupt line --extension gave (irq=N) to `level` (0 or 1). */
int swiftlet_ext_set_irq(int channel, uint32_t level);

#ifdef __cplusplus
}
#endif

#endif /* SWIFTLET_SWIFTLET_H */
