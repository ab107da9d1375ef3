/* hvt-abi: 2
 *
 * tls: thread-local storage as a Solo5 ABI-2 unikernel has it. The image
 * carries .tdata/.tbss in a PT_TLS segment (inside the read-only PT_LOAD,
 * as Solo5's toolchain lays it out); the guest, not the tender, builds its
 * TLS block and points FS at it with wrmsr(IA32_FS_BASE), as Solo5's
 * platform_set_tls_base does. Prints
 * "tls: initialised=1234567 zeroed=0 SUCCESS" and exits 0.
 */
#include "hvt_guest.h"

HVT_MANIFEST();

static __thread volatile long initialised = 1234567;
static __thread volatile long zeroed;

extern const char _tdata_start[], _tdata_end[], _tbss_end[];

/* x86-64 TLS variant II: the block ends at the thread pointer, whose first
 * word points at itself. */
static uint8_t tls_area[4096] __attribute__((aligned(64)));

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    size_t tdata = (size_t)(_tdata_end - _tdata_start);
    size_t total = (size_t)(_tbss_end - _tdata_start);
    size_t block = (total + 7) & ~(size_t)7;     /* round_up(p_memsz, p_align = 8) */
    if (block + 8 > sizeof tls_area) {
        puts("FAIL: TLS segment too large");
        return 1;
    }
    uint8_t *tp = tls_area + block;
    memcpy(tp - block, _tdata_start, tdata);
    memset(tp - block + tdata, 0, block - tdata);
    *(uint64_t *)tp = (uint64_t)(uintptr_t)tp;
    uint64_t base = (uint64_t)(uintptr_t)tp;
    __asm__ __volatile__("wrmsr" : : "c"(0xc0000100u), "a"((uint32_t)base),
                         "d"((uint32_t)(base >> 32)) : "memory");
    printf("tls: initialised=%ld zeroed=%ld %s\n", initialised, zeroed,
           initialised == 1234567 && zeroed == 0 ? "SUCCESS" : "FAIL");
    return initialised == 1234567 && zeroed == 0 ? 0 : 1;
}
