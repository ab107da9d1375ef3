/*
 * PVH entry for Swiftlet's freestanding test guests (booted by `swiftlet run --kernel X.elf`).
 * The VMM enters `pvh_start` in 32-bit protected mode, paging off, EBX = struct hvm_start_info.
 * We check the start-info magic, build identity page tables for the first 4 GiB (2 MiB pages),
 * enter long mode and call `guest_main(start_info)`; its return value goes to the debug-exit port.
 */
        .section .note.pvh, "a", @note
        .align 4
        .long 4                 /* namesz: "Xen\0" */
        .long 4                 /* descsz */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_start

        .section .text.start, "ax", @progbits
        .code32
        .globl pvh_start
pvh_start:
        cli
        cmpl    $0x336ec578, (%ebx)     /* hvm_start_info magic */
        je      1f
        movb    $0xEE, %al              /* wrong magic: report 0xEE and stop */
        outb    %al, $0xf4
        hlt
1:      movl    %ebx, %edi              /* keep start_info for guest_main */
        movl    $stack_top, %esp
        /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..3; PDx: 2 MiB identity pages. */
        movl    $pdpt, %eax
        orl     $3, %eax
        movl    %eax, pml4
        xorl    %ecx, %ecx
2:      movl    %ecx, %eax
        shll    $12, %eax
        addl    $pd, %eax
        orl     $3, %eax
        movl    %eax, pdpt(,%ecx,8)
        incl    %ecx
        cmpl    $4, %ecx
        jb      2b
        xorl    %ecx, %ecx
3:      movl    %ecx, %eax
        shll    $21, %eax
        orl     $0x83, %eax
        movl    %eax, pd(,%ecx,8)
        movl    %ecx, %eax
        shrl    $11, %eax               /* high dword: (i * 2 MiB) >> 32 */
        movl    %eax, pd+4(,%ecx,8)
        incl    %ecx
        cmpl    $2048, %ecx
        jb      3b
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x620, %eax            /* PAE, OSFXSR, OSXMMEXCPT */
        movl    %eax, %cr4
        movl    $0xC0000080, %ecx       /* EFER.LME */
        rdmsr
        orl     $0x100, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax       /* PG | PE */
        movl    %eax, %cr0
        lgdt    gdt_pointer
        ljmp    $0x08, $long_mode

        .code64
long_mode:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    %edi, %edi              /* zero-extend start_info */
        movabsq $stack_top, %rsp
        call    guest_main
        movw    $0xf4, %dx
        outb    %al, %dx
4:      hlt
        jmp     4b

        .section .rodata
        .align 16
gdt:
        .quad 0
        .quad 0x00AF9B000000FFFF        /* 0x08: 64-bit code */
        .quad 0x00CF93000000FFFF        /* 0x10: data */
gdt_pointer:
        .word gdt_pointer - gdt - 1
        .long gdt

        .section .bss
        .align 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096
        .skip 16384
stack_top:
