/*
 * start.S - entry point and exception stubs for Swiftlet hvt test guests.
 *
 * At _start the tender has set up: 64-bit long mode, identity paging,
 * %rdi = struct hvt_boot_info *, %rsp = top of memory - 8 (i.e. aligned as
 * on function entry), interrupts disabled, no IDT.
 */
        .text
        .section .text.start, "ax", @progbits
        .globl  _start
        .type   _start, @function
_start:
        cli
        cld
        xorl    %ebp, %ebp
        andq    $-16, %rsp              /* ABI: 16-byte aligned at call */
        call    hvt_cstart              /* (struct hvt_boot_info *) in %rdi */
1:      cli                             /* hvt_cstart never returns */
        hlt
        jmp     1b
        .size   _start, . - _start

/*
 * Exception stubs for vectors 0..31. The CPU pushes an error code for
 * vectors 8, 10-14, 17, 21, 29 and 30; for the others we push a dummy 0 so
 * that every stub hands the same frame to hvt_trap_common:
 *     [rsp+0] vector  [rsp+8] error code  [rsp+16] rip  [rsp+24] cs ...
 */
        .text
        .macro  TRAP_NOERR vec
        .align  16
hvt_trap_\vec:
        pushq   $0
        pushq   $\vec
        jmp     hvt_trap_common
        .endm

        .macro  TRAP_ERR vec
        .align  16
hvt_trap_\vec:
        pushq   $\vec
        jmp     hvt_trap_common
        .endm

        TRAP_NOERR 0
        TRAP_NOERR 1
        TRAP_NOERR 2
        TRAP_NOERR 3
        TRAP_NOERR 4
        TRAP_NOERR 5
        TRAP_NOERR 6
        TRAP_NOERR 7
        TRAP_ERR   8
        TRAP_NOERR 9
        TRAP_ERR   10
        TRAP_ERR   11
        TRAP_ERR   12
        TRAP_ERR   13
        TRAP_ERR   14
        TRAP_NOERR 15
        TRAP_NOERR 16
        TRAP_ERR   17
        TRAP_NOERR 18
        TRAP_NOERR 19
        TRAP_NOERR 20
        TRAP_ERR   21
        TRAP_NOERR 22
        TRAP_NOERR 23
        TRAP_NOERR 24
        TRAP_NOERR 25
        TRAP_NOERR 26
        TRAP_NOERR 27
        TRAP_NOERR 28
        TRAP_ERR   29
        TRAP_ERR   30
        TRAP_NOERR 31

        .align  16
        .type   hvt_trap_common, @function
hvt_trap_common:
        movq    0(%rsp), %rdi           /* vector */
        movq    8(%rsp), %rsi           /* error code */
        movq    16(%rsp), %rdx          /* faulting rip */
        movq    %cr2, %rcx              /* fault address (#PF) */
        /* Overwrite the vector with cr2: the stack then holds Solo5's trap frame
         * (cr2, ec, rip, cs, rflags, rsp, ss), passed as the HALT cookie. */
        movq    %rcx, 0(%rsp)
        movq    %rsp, %r8               /* struct hvt_trap_frame * */
        andq    $-16, %rsp
        call    hvt_trap                /* never returns */
2:      cli
        hlt
        jmp     2b
        .size   hvt_trap_common, . - hvt_trap_common

/* Table of stub addresses, used by C to build the IDT. */
        .section .rodata
        .align  8
        .globl  hvt_trap_stubs
hvt_trap_stubs:
        .irp    v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad   hvt_trap_\v
        .endr
        .size   hvt_trap_stubs, . - hvt_trap_stubs

        .section .note.GNU-stack, "", @progbits
