/* Version 1's struct layouts, fixed: compiled against the frozen v1 header and against the
 * current one (Tests/abi/run), so a change that moves or resizes any v1 field fails to build.
 * Structs may only grow at their end (docs/abi.md, "Compatibility"). */
#include <stddef.h>
#include <swiftlet/swiftlet.h>

#define AT(type, field, offset) _Static_assert(offsetof(struct type, field) == (offset), #type "." #field)
#define SIZE(type, size) _Static_assert(sizeof(struct type) >= (size), "sizeof " #type)
#define SIZE_EXACT(type, size) _Static_assert(sizeof(struct type) == (size), "sizeof " #type)

_Static_assert(SWIFTLET_ABI_VERSION >= 1, "ABI version");
_Static_assert(sizeof(swiftlet_machine_t) == 8 && sizeof(swiftlet_vcpu_t) == 8, "handles are 64-bit");
_Static_assert(SWIFTLET_OK == 0 && SWIFTLET_E_INVALID == -1 && SWIFTLET_E_VERSION == -2 && SWIFTLET_E_NOT_OPEN == -3 &&
               SWIFTLET_E_HANDLE == -4 && SWIFTLET_E_STRUCT_SIZE == -5 && SWIFTLET_E_BUSY == -6 && SWIFTLET_E_OVERLAP == -7 &&
               SWIFTLET_E_ALIGNMENT == -8 && SWIFTLET_E_NOT_FOUND == -9 && SWIFTLET_E_WRONG_EXIT == -10 &&
               SWIFTLET_E_LIMIT == -11 && SWIFTLET_E_UNAVAILABLE == -12 && SWIFTLET_E_KERNEL == -13 &&
               SWIFTLET_E_UNSUPPORTED == -14 && SWIFTLET_E_GUEST == -15, "status codes");
_Static_assert(SWIFTLET_EXIT_NONE == 0 && SWIFTLET_EXIT_IO == 1 && SWIFTLET_EXIT_MMIO == 2 && SWIFTLET_EXIT_HALT == 3 &&
               SWIFTLET_EXIT_SHUTDOWN == 4 && SWIFTLET_EXIT_HYPERCALL == 5 && SWIFTLET_EXIT_INTERNAL_ERROR == 6 &&
               SWIFTLET_EXIT_INTERRUPTED == 7 && SWIFTLET_EXIT_FAILED_ENTRY == 8 && SWIFTLET_EXIT_SYSTEM_EVENT == 9 &&
               SWIFTLET_EXIT_DEBUG == 10 && SWIFTLET_EXIT_UNKNOWN == 11, "exit reasons");
_Static_assert(SWIFTLET_ASSIST_IO == 1 && SWIFTLET_ASSIST_MEM == 2 && SWIFTLET_MACHINE_IRQCHIP == 1 && SWIFTLET_MAP_READONLY == 1, "flags");

SIZE(swiftlet_capabilities, 40);
AT(swiftlet_capabilities, size, 0); AT(swiftlet_capabilities, abi_version, 4); AT(swiftlet_capabilities, max_machines, 8);
AT(swiftlet_capabilities, max_vcpus, 12); AT(swiftlet_capabilities, recommended_vcpus, 16);
AT(swiftlet_capabilities, max_mappings, 20); AT(swiftlet_capabilities, page_size, 24); AT(swiftlet_capabilities, assists, 32);

SIZE(swiftlet_regs, 152);
AT(swiftlet_regs, size, 0); AT(swiftlet_regs, rax, 8); AT(swiftlet_regs, rbx, 16); AT(swiftlet_regs, rcx, 24);
AT(swiftlet_regs, rdx, 32); AT(swiftlet_regs, rsi, 40); AT(swiftlet_regs, rdi, 48); AT(swiftlet_regs, rsp, 56);
AT(swiftlet_regs, rbp, 64); AT(swiftlet_regs, r8, 72); AT(swiftlet_regs, r15, 128); AT(swiftlet_regs, rip, 136);
AT(swiftlet_regs, rflags, 144);

SIZE_EXACT(swiftlet_segment, 24);
AT(swiftlet_segment, base, 0); AT(swiftlet_segment, limit, 8); AT(swiftlet_segment, selector, 12); AT(swiftlet_segment, type, 14);
AT(swiftlet_segment, present, 15); AT(swiftlet_segment, dpl, 16); AT(swiftlet_segment, db, 17); AT(swiftlet_segment, s, 18);
AT(swiftlet_segment, l, 19); AT(swiftlet_segment, g, 20); AT(swiftlet_segment, avl, 21); AT(swiftlet_segment, unusable, 22);
SIZE_EXACT(swiftlet_dtable, 16);
AT(swiftlet_dtable, base, 0); AT(swiftlet_dtable, limit, 8);

SIZE(swiftlet_sregs, 288);
AT(swiftlet_sregs, size, 0); AT(swiftlet_sregs, cs, 8); AT(swiftlet_sregs, ds, 32); AT(swiftlet_sregs, es, 56);
AT(swiftlet_sregs, fs, 80); AT(swiftlet_sregs, gs, 104); AT(swiftlet_sregs, ss, 128); AT(swiftlet_sregs, tr, 152);
AT(swiftlet_sregs, ldt, 176); AT(swiftlet_sregs, gdt, 200); AT(swiftlet_sregs, idt, 216); AT(swiftlet_sregs, cr0, 232);
AT(swiftlet_sregs, cr2, 240); AT(swiftlet_sregs, cr3, 248); AT(swiftlet_sregs, cr4, 256); AT(swiftlet_sregs, cr8, 264);
AT(swiftlet_sregs, efer, 272); AT(swiftlet_sregs, apic_base, 280);

SIZE(swiftlet_fpu, 416);
AT(swiftlet_fpu, size, 0); AT(swiftlet_fpu, mxcsr, 4); AT(swiftlet_fpu, st, 8); AT(swiftlet_fpu, fcw, 136); AT(swiftlet_fpu, fsw, 138);
AT(swiftlet_fpu, ftwx, 140); AT(swiftlet_fpu, last_opcode, 142); AT(swiftlet_fpu, last_ip, 144); AT(swiftlet_fpu, last_dp, 152);
AT(swiftlet_fpu, xmm, 160);

SIZE_EXACT(swiftlet_msr, 16);
AT(swiftlet_msr, index, 0); AT(swiftlet_msr, value, 8);

SIZE_EXACT(swiftlet_exit_io, 16);
AT(swiftlet_exit_io, port, 0); AT(swiftlet_exit_io, width, 2); AT(swiftlet_exit_io, is_write, 3); AT(swiftlet_exit_io, count, 4);
AT(swiftlet_exit_io, data, 8);
SIZE_EXACT(swiftlet_exit_mmio, 24);
AT(swiftlet_exit_mmio, gpa, 0); AT(swiftlet_exit_mmio, width, 8); AT(swiftlet_exit_mmio, is_write, 12); AT(swiftlet_exit_mmio, data, 16);
SIZE_EXACT(swiftlet_exit_hypercall, 56);
SIZE_EXACT(swiftlet_exit_internal, 136);
AT(swiftlet_exit_internal, suberror, 0); AT(swiftlet_exit_internal, ndata, 4); AT(swiftlet_exit_internal, data, 8);
SIZE(swiftlet_exit, 264);
AT(swiftlet_exit, size, 0); AT(swiftlet_exit, reason, 4); AT(swiftlet_exit, u, 8);
_Static_assert(sizeof(((struct swiftlet_exit *)0)->u) == 256, "the exit union is 256 bytes");

SIZE_EXACT(swiftlet_io_access, 8);
AT(swiftlet_io_access, port, 0); AT(swiftlet_io_access, width, 2); AT(swiftlet_io_access, is_write, 3); AT(swiftlet_io_access, data, 4);
SIZE_EXACT(swiftlet_mem_access, 24);
AT(swiftlet_mem_access, gpa, 0); AT(swiftlet_mem_access, width, 8); AT(swiftlet_mem_access, is_write, 12); AT(swiftlet_mem_access, data, 16);

/* Every v1 function, with its v1 type: a changed signature fails here. */
static void check_signatures(void) __attribute__((unused));
static void check_signatures(void) {
    int (*open_)(uint32_t) = swiftlet_open; (void)open_;
    uint32_t (*abi_)(void) = swiftlet_abi_version; (void)abi_;
    size_t (*err_)(char *, size_t) = swiftlet_last_error; (void)err_;
    int (*caps_)(struct swiftlet_capabilities *) = swiftlet_capabilities; (void)caps_;
    int (*mc_)(uint32_t, swiftlet_machine_t *) = swiftlet_machine_create; (void)mc_;
    int (*md_)(swiftlet_machine_t) = swiftlet_machine_destroy; (void)md_;
    int (*map_)(swiftlet_machine_t, uint64_t, void *, uint64_t, uint32_t) = swiftlet_machine_map; (void)map_;
    int (*unmap_)(swiftlet_machine_t, uint64_t, uint64_t) = swiftlet_machine_unmap; (void)unmap_;
    int (*irq_)(swiftlet_machine_t, uint32_t, uint32_t) = swiftlet_machine_irq_line; (void)irq_;
    int (*vc_)(swiftlet_machine_t, uint32_t, swiftlet_vcpu_t *) = swiftlet_vcpu_create; (void)vc_;
    int (*vd_)(swiftlet_vcpu_t) = swiftlet_vcpu_destroy; (void)vd_;
    int (*gr_)(swiftlet_vcpu_t, struct swiftlet_regs *) = swiftlet_vcpu_get_regs; (void)gr_;
    int (*sr_)(swiftlet_vcpu_t, const struct swiftlet_regs *) = swiftlet_vcpu_set_regs; (void)sr_;
    int (*gs_)(swiftlet_vcpu_t, struct swiftlet_sregs *) = swiftlet_vcpu_get_sregs; (void)gs_;
    int (*ss_)(swiftlet_vcpu_t, const struct swiftlet_sregs *) = swiftlet_vcpu_set_sregs; (void)ss_;
    int (*gf_)(swiftlet_vcpu_t, struct swiftlet_fpu *) = swiftlet_vcpu_get_fpu; (void)gf_;
    int (*sf_)(swiftlet_vcpu_t, const struct swiftlet_fpu *) = swiftlet_vcpu_set_fpu; (void)sf_;
    int (*gm_)(swiftlet_vcpu_t, struct swiftlet_msr *, uint32_t) = swiftlet_vcpu_get_msrs; (void)gm_;
    int (*sm_)(swiftlet_vcpu_t, const struct swiftlet_msr *, uint32_t) = swiftlet_vcpu_set_msrs; (void)sm_;
    int (*run_)(swiftlet_vcpu_t, struct swiftlet_exit *) = swiftlet_vcpu_run; (void)run_;
    int (*kick_)(swiftlet_vcpu_t) = swiftlet_vcpu_kick; (void)kick_;
    int (*inj_)(swiftlet_vcpu_t, uint32_t) = swiftlet_vcpu_inject_interrupt; (void)inj_;
    int (*tr_)(swiftlet_vcpu_t, uint64_t, uint64_t *) = swiftlet_vcpu_translate; (void)tr_;
    int (*aio_)(swiftlet_vcpu_t, const struct swiftlet_exit *, swiftlet_io_callback, void *) = swiftlet_assist_io; (void)aio_;
    int (*amem_)(swiftlet_vcpu_t, const struct swiftlet_exit *, swiftlet_mem_callback, void *) = swiftlet_assist_mem; (void)amem_;
}
