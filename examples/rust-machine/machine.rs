//! The C example's VMM again, in Rust with rustc alone (no crates, no bindgen): libswiftlet's
//! machine level through a hand-written FFI declaration of the structs and functions it uses.
//! A long-mode guest prints one line with `rep outsb` (served by swiftlet_assist_io) and one with
//! MMIO stores (served by swiftlet_assist_mem), then halts.
//!
//!   rustc -O -o machine machine.rs -L PREFIX/lib -l swiftlet && LD_LIBRARY_PATH=PREFIX/lib ./machine

use std::io::Write;
use std::os::raw::{c_char, c_int, c_void};

const SWIFTLET_ABI_VERSION: u32 = 1;
const SWIFTLET_EXIT_IO: u32 = 1;
const SWIFTLET_EXIT_MMIO: u32 = 2;
const SWIFTLET_EXIT_HALT: u32 = 3;
const RAM_SIZE: usize = 2 << 20;
const CODE: usize = 0x8000;
const CONSOLE_PORT: u16 = 0xE9;
const CONSOLE_MMIO: u64 = 0x1000_0000;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Segment { base: u64, limit: u32, selector: u16, kind: u8, present: u8, dpl: u8, db: u8, s: u8, l: u8, g: u8, avl: u8, unusable: u8, reserved: u8 }
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DTable { base: u64, limit: u16, reserved: [u16; 3] }
#[repr(C)]
#[derive(Default)]
struct SRegs {
    size: u32, reserved: u32,
    cs: Segment, ds: Segment, es: Segment, fs: Segment, gs: Segment, ss: Segment, tr: Segment, ldt: Segment,
    gdt: DTable, idt: DTable,
    cr0: u64, cr2: u64, cr3: u64, cr4: u64, cr8: u64, efer: u64, apic_base: u64,
}
#[repr(C)]
#[derive(Default)]
struct Regs { size: u32, reserved: u32, gpr: [u64; 16], rip: u64, rflags: u64 }
#[repr(C)]
struct Exit { size: u32, reason: u32, u: [u64; 32] }
#[repr(C)]
struct IoAccess { port: u16, width: u8, is_write: u8, data: [u8; 4] }
#[repr(C)]
struct MemAccess { gpa: u64, width: u32, is_write: u32, data: [u8; 8] }

#[link(name = "swiftlet")]
extern "C" {
    fn swiftlet_open(version: u32) -> c_int;
    fn swiftlet_last_error(buffer: *mut c_char, size: usize) -> usize;
    fn swiftlet_machine_create(flags: u32, machine: *mut u64) -> c_int;
    fn swiftlet_machine_destroy(machine: u64) -> c_int;
    fn swiftlet_machine_map(machine: u64, gpa: u64, host: *mut c_void, size: u64, flags: u32) -> c_int;
    fn swiftlet_vcpu_create(machine: u64, index: u32, vcpu: *mut u64) -> c_int;
    fn swiftlet_vcpu_get_sregs(vcpu: u64, sregs: *mut SRegs) -> c_int;
    fn swiftlet_vcpu_set_sregs(vcpu: u64, sregs: *const SRegs) -> c_int;
    fn swiftlet_vcpu_set_regs(vcpu: u64, regs: *const Regs) -> c_int;
    fn swiftlet_vcpu_run(vcpu: u64, exit: *mut Exit) -> c_int;
    fn swiftlet_assist_io(vcpu: u64, exit: *const Exit, callback: extern "C" fn(*mut c_void, *mut IoAccess), context: *mut c_void) -> c_int;
    fn swiftlet_assist_mem(vcpu: u64, exit: *const Exit, callback: extern "C" fn(*mut c_void, *mut MemAccess), context: *mut c_void) -> c_int;
}

fn check(status: c_int, what: &str) {
    if status == 0 { return; }
    let mut message = [0 as c_char; 512];
    let n = unsafe { swiftlet_last_error(message.as_mut_ptr(), message.len()) };
    let text: Vec<u8> = message[..n.min(511)].iter().map(|&c| c as u8).collect();
    eprintln!("machine: {}: {} (status {})", what, String::from_utf8_lossy(&text), status);
    std::process::exit(1);
}

/// The guest: `lea msg1; mov len, %ecx; mov $0xE9, %dx; rep outsb; lea msg2; mov $CONSOLE_MMIO, %edi;
/// 1: lodsb; test %al, %al; jz 2f; mov %al, (%rdi); jmp 1b; 2: hlt`, then the two messages.
fn guest() -> Vec<u8> {
    let mut code = vec![
        0x48, 0x8d, 0x35, 0x21, 0x00, 0x00, 0x00, 0xb9, 0x3a, 0x00, 0x00, 0x00, 0x66, 0xba, 0xe9, 0x00, 0xf3, 0x6e,
        0x48, 0x8d, 0x35, 0x49, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x00, 0x10, 0xac, 0x84, 0xc0, 0x74, 0x04, 0x88,
        0x07, 0xeb, 0xf7, 0xf4,
    ];
    code.extend_from_slice(b"hello from Rust, through rep outsb and swiftlet_assist_io\n");
    code.extend_from_slice(b"and again through MMIO stores and swiftlet_assist_mem\n\0");
    code
}

extern "C" fn console_port(_: *mut c_void, access: *mut IoAccess) {
    let access = unsafe { &mut *access };
    if access.port == CONSOLE_PORT && access.is_write != 0 { let _ = std::io::stdout().write_all(&access.data[..1]); }
}

extern "C" fn console_mmio(_: *mut c_void, access: *mut MemAccess) {
    let access = unsafe { &mut *access };
    if access.gpa == CONSOLE_MMIO && access.is_write != 0 { let _ = std::io::stdout().write_all(&access.data[..1]); }
    else if access.is_write == 0 { access.data = [0xFF; 8]; }
}

fn main() {
    // Guest RAM: page-aligned memory that outlives the machine (leaked on purpose, as the process ends with it).
    let layout = std::alloc::Layout::from_size_align(RAM_SIZE, 4096).unwrap();
    let ram = unsafe { std::slice::from_raw_parts_mut(std::alloc::alloc_zeroed(layout), RAM_SIZE) };
    let mut entry = |at: usize, value: u64| ram[at..at + 8].copy_from_slice(&value.to_le_bytes());
    entry(0x1000, 0x2000 | 3); // PML4 -> PDPT
    entry(0x2000, 0x3000 | 3); // PDPT -> PD
    for i in 0..512u64 { entry(0x3000 + 8 * i as usize, (i << 21) | 0x83); } // 2 MiB pages, the first GiB
    let code = guest();
    ram[CODE..CODE + code.len()].copy_from_slice(&code);

    unsafe {
        check(swiftlet_open(SWIFTLET_ABI_VERSION), "open");
        let (mut machine, mut vcpu) = (0u64, 0u64);
        check(swiftlet_machine_create(0, &mut machine), "create a machine");
        check(swiftlet_machine_map(machine, 0, ram.as_mut_ptr() as *mut c_void, RAM_SIZE as u64, 0), "map RAM");
        check(swiftlet_vcpu_create(machine, 0, &mut vcpu), "create a vCPU");
        let mut sregs = SRegs { size: std::mem::size_of::<SRegs>() as u32, ..Default::default() };
        check(swiftlet_vcpu_get_sregs(vcpu, &mut sregs), "get sregs");
        let code_segment = Segment { limit: 0xFFFF_FFFF, selector: 8, kind: 11, present: 1, s: 1, l: 1, g: 1, ..Default::default() };
        let data_segment = Segment { selector: 0x10, kind: 3, l: 0, db: 1, ..code_segment };
        sregs.cs = code_segment;
        sregs.ds = data_segment; sregs.es = data_segment; sregs.fs = data_segment; sregs.gs = data_segment; sregs.ss = data_segment;
        sregs.cr3 = 0x1000; sregs.cr4 = 1 << 5; sregs.cr0 = 0x8000_0011; sregs.efer = 0x500;
        check(swiftlet_vcpu_set_sregs(vcpu, &sregs), "set sregs");
        let regs = Regs { size: std::mem::size_of::<Regs>() as u32, rip: CODE as u64, rflags: 2, ..Default::default() };
        check(swiftlet_vcpu_set_regs(vcpu, &regs), "set regs");

        let mut exit = Exit { size: std::mem::size_of::<Exit>() as u32, reason: 0, u: [0; 32] };
        let mut exits = 0u64;
        loop {
            check(swiftlet_vcpu_run(vcpu, &mut exit), "run");
            exits += 1;
            match exit.reason {
                SWIFTLET_EXIT_IO => check(swiftlet_assist_io(vcpu, &exit, console_port, std::ptr::null_mut()), "assist_io"),
                SWIFTLET_EXIT_MMIO => check(swiftlet_assist_mem(vcpu, &exit, console_mmio, std::ptr::null_mut()), "assist_mem"),
                SWIFTLET_EXIT_HALT => break,
                other => { eprintln!("machine: unexpected exit {}", other); std::process::exit(1); }
            }
        }
        let _ = std::io::stdout().flush();
        eprintln!("machine (Rust): the guest halted after {} exits", exits);
        check(swiftlet_machine_destroy(machine), "destroy the machine");
    }
}
