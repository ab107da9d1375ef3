/* Freestanding helpers for Swiftlet's PVH test guests: port I/O, COM1 output, start info. */
#ifndef GUEST_H
#define GUEST_H
#include <stdint.h>
#include <stddef.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* struct hvm_start_info (version 1). */
struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry { uint64_t addr, size; uint32_t type, reserved; };
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };

static inline void serial_putc(char c) {
    while (!(inb(0x3F8 + 5) & 0x20)) { }   /* THR empty */
    outb(0x3F8, (uint8_t)c);
}
static inline void serial_puts(const char *s) { while (*s) { if (*s == '\n') serial_putc('\r'); serial_putc(*s++); } }
static inline void serial_putu(uint64_t v) {
    char b[21]; int i = 20; b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    serial_puts(&b[i]);
}
static inline void serial_puthex(uint64_t v) {
    char b[19]; b[0] = '0'; b[1] = 'x'; b[18] = 0;
    for (int i = 0; i < 16; i++) b[17 - i] = "0123456789abcdef"[(v >> (4 * i)) & 15];
    serial_puts(b);
}

/* Entry point called in long mode; the return value is written to the debug-exit port 0xF4. */
int guest_main(struct hvm_start_info *si);
#endif
