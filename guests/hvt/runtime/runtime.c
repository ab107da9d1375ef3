/*
 * runtime.c - the tiny runtime shared by all Swiftlet hvt test guests:
 * C entry (argv parsing, IDT), hypercall wrappers, console and libc bits.
 */
#include "hvt_guest.h"

/* Every hvt guest carries the ABI note (version HVT_ABI); the tender refuses ELFs without. */
__attribute__((section(".note.solo5.abi"), aligned(4), used))
const struct abi1_note hvt_abi_note = {
    .h = {
        .n_namesz = SOLO5_NOTE_NAMESZ,
        .n_descsz = sizeof(struct abi1_note) - sizeof(struct solo5_note_header),
        .n_type = ABI1_NOTE_TYPE,
        .n_name = SOLO5_NOTE_NAME,
    },
    .abi_target = HVT_ABI_TARGET_HVT,
    .abi_version = HVT_ABI_VERSION,
    .reserved0 = 0,
    .reserved1 = 0,
};

#if HVT_ABI >= 2
/*
 * Solo5's ABI-2 toolchain also tags images with an OpenBSD NT_VERSION note
 * (name "OpenBSD", type 1, descriptor 0), so that OpenBSD does not try to
 * run them as native programs; the loader must accept it beside its own.
 */
struct openbsd_note {
    uint32_t n_namesz, n_descsz, n_type;
    char n_name[8];
    uint32_t desc;
};
__attribute__((section(".note.solo5.not_openbsd"), aligned(4), used))
const struct openbsd_note hvt_not_openbsd_note = {
    .n_namesz = 8, .n_descsz = 4, .n_type = 1, .n_name = "OpenBSD", .desc = 0,
};
#endif

struct hvt_boot_info *hvt_bi;

/* ------------------------------------------------------------------ */
/* Hypercall wrappers                                                  */
/* ------------------------------------------------------------------ */

/* HALT with a cookie: the guest address of 512 bytes the tender may read (Solo5
 * passes its trap frame there; solo5-hvt-debug's dumpcore takes the registers
 * at the fault from it). */
static void __attribute__((noreturn)) halt_cookie(int status, void *cookie)
{
    volatile struct hvt_hc_halt a;
    a.cookie = (uint64_t)(uintptr_t)cookie;
    a.exit_status = status;
    hvt_do_hypercall(HVT_HYPERCALL_HALT, &a);
    for (;;)
        __asm__ __volatile__("cli; hlt");
}

void halt(int status)
{
    volatile struct hvt_hc_halt a;
    a.cookie = 0;
    a.exit_status = status;
    hvt_do_hypercall(HVT_HYPERCALL_HALT, &a);
    for (;;)
        __asm__ __volatile__("cli; hlt");
}

void abort(void)
{
    halt(255);
}

void hvt_write(const char *buf, size_t len)
{
    volatile struct hvt_hc_puts a;
    a.data = (uint64_t)(uintptr_t)buf;
    a.len = len;
    hvt_do_hypercall(HVT_HYPERCALL_PUTS, &a);
}

uint64_t walltime(void)
{
    volatile struct hvt_hc_walltime a;
    a.nsecs = 0;
    hvt_do_hypercall(HVT_HYPERCALL_WALLTIME, &a);
    return a.nsecs;
}

int hvt_poll(uint64_t timeout_ns, uint64_t *ready_set)
{
    volatile struct hvt_hc_poll a;
    a.timeout_nsecs = timeout_ns;
    a.ready_set = 0;
    a.ret = -1;
    hvt_do_hypercall(HVT_HYPERCALL_POLL, &a);
    if (ready_set)
        *ready_set = a.ready_set;
    return a.ret;
}

int block_write(uint64_t handle, uint64_t offset, const void *buf, size_t len)
{
    volatile struct hvt_hc_block_write a;
    a.handle = handle;
    a.offset = offset;
    a.data = (uint64_t)(uintptr_t)buf;
    a.len = len;
    a.ret = -1;
    hvt_do_hypercall(HVT_HYPERCALL_BLOCK_WRITE, &a);
    return a.ret;
}

int block_read(uint64_t handle, uint64_t offset, void *buf, size_t len)
{
    volatile struct hvt_hc_block_read a;
    a.handle = handle;
    a.offset = offset;
    a.data = (uint64_t)(uintptr_t)buf;
    a.len = len;
    a.ret = -1;
    hvt_do_hypercall(HVT_HYPERCALL_BLOCK_READ, &a);
    return a.ret;
}

/* net_write and net_read: runtime/netring.c (ring or hypercalls). */

const struct mft_entry *hvt_mft_find(const char *name, uint32_t type,
                                     uint64_t *handle)
{
    const struct mft *m = (const struct mft *)(uintptr_t)hvt_bi->mft;
    if (m == NULL)
        return NULL;
    for (uint32_t i = 0; i < m->entries && i < MFT_MAX_ENTRIES; i++) {
        const struct mft_entry *e = &m->e[i];
        if (e->type == type && strncmp(e->name, name, MFT_NAME_SIZE) == 0) {
            if (handle)
                *handle = i;
            return e;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* libc bits (gcc may emit calls to memset/memcpy/memmove/memcmp)      */
/* ------------------------------------------------------------------ */

#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

NO_LIBCALL void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

NO_LIBCALL void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

NO_LIBCALL void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp) {
        while (n--)
            *dp++ = *sp++;
    } else {
        while (n--)
            dp[n] = sp[n];
    }
    return d;
}

NO_LIBCALL int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

NO_LIBCALL size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (*a == 0)
            return 0;
    }
    return 0;
}

int strcmp(const char *a, const char *b)
{
    return strncmp(a, b, (size_t)-1);
}

long hvt_atol(const char *s, int *ok)
{
    long v = 0;
    int neg = 0, digits = 0;
    if (*s == '-' || *s == '+')
        neg = (*s++ == '-');
    for (; *s >= '0' && *s <= '9'; s++, digits++)
        v = v * 10 + (*s - '0');
    if (ok)
        *ok = digits > 0 && *s == 0;
    return neg ? -v : v;
}

/* ------------------------------------------------------------------ */
/* printf-lite: %[0][width][l|ll|z](d|i|u|x|X|s|c|p) and %%            */
/* ------------------------------------------------------------------ */

struct outbuf {
    char *buf;
    size_t size;
    size_t pos;
};

static void ob_putc(struct outbuf *o, char c)
{
    if (o->pos + 1 < o->size)
        o->buf[o->pos] = c;
    o->pos++;
}

static void ob_num(struct outbuf *o, uint64_t v, unsigned base, int neg,
                   int width, char pad, int upper)
{
    char tmp[24];
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int len = n + (neg ? 1 : 0);
    if (neg && pad == '0')
        ob_putc(o, '-');
    for (; len < width; len++)
        ob_putc(o, pad);
    if (neg && pad != '0')
        ob_putc(o, '-');
    while (n)
        ob_putc(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct outbuf o = { buf, size, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            ob_putc(&o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, long) : va_arg(ap, int);
            uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            ob_num(&o, u, 10, v < 0, width, pad, 0);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            ob_num(&o, v, *fmt == 'u' ? 10 : 16, 0, width, pad, *fmt == 'X');
            break;
        }
        case 'p':
            ob_putc(&o, '0');
            ob_putc(&o, 'x');
            ob_num(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, 0,
                   width, pad, 0);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == NULL)
                s = "(null)";
            int len = (int)strlen(s);
            for (; len < width; len++)
                ob_putc(&o, ' ');
            while (*s)
                ob_putc(&o, *s++);
            break;
        }
        case 'c':
            ob_putc(&o, (char)va_arg(ap, int));
            break;
        case '%':
            ob_putc(&o, '%');
            break;
        case 0:
            fmt--;
            break;
        default:
            ob_putc(&o, '%');
            ob_putc(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.pos < size ? o.pos : size - 1] = 0;
    return (int)o.pos;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    hvt_write(buf, len);
    return n;
}

int puts(const char *s)
{
    hvt_write(s, strlen(s));
    hvt_write("\n", 1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Exceptions                                                          */
/* ------------------------------------------------------------------ */

struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t zero;
};
_Static_assert(sizeof(struct idt_gate) == 16, "idt gate size");

struct idt_ptr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

#define HVT_CODE_SELECTOR   0x08
#define IDT_INTERRUPT_GATE  0x8e        /* present, DPL 0, 64-bit int gate */
#define HVT_NUM_TRAPS       32

extern const uint64_t hvt_trap_stubs[HVT_NUM_TRAPS];
static struct idt_gate idt[HVT_NUM_TRAPS] __attribute__((aligned(16)));

/*
 * Our own GDT (null, 64-bit code 0x08, data 0x10), loaded before the IDT, as
 * Solo5's bindings do: the tender's GDT is its own business (solo5-hvt's and
 * Swiftlet's differ), and the IDT's gates must name a code segment we know.
 */
static const uint64_t gdt[3] __attribute__((aligned(16))) = {
    0,
    0x00af9b000000ffffull,              /* code: present, DPL 0, L=1, G */
    0x00cf93000000ffffull,              /* data: present, DPL 0, writable, D/B, G */
};

static void gdt_install(void)
{
    struct idt_ptr p = { sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt };
    __asm__ __volatile__(
        "lgdt %0\n\t"
        "movl $0x10, %%eax\n\t"
        "movl %%eax, %%ds\n\t"
        "movl %%eax, %%es\n\t"
        "movl %%eax, %%ss\n\t"
        "pushq $0x08\n\t"                /* reload CS with a far return */
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:"
        : : "m"(p) : "rax", "memory");
}

static void idt_install(void)
{
    for (int i = 0; i < HVT_NUM_TRAPS; i++) {
        uint64_t a = hvt_trap_stubs[i];
        idt[i].off_lo = (uint16_t)a;
        idt[i].sel = HVT_CODE_SELECTOR;
        idt[i].ist = 0;
        idt[i].type_attr = IDT_INTERRUPT_GATE;
        idt[i].off_mid = (uint16_t)(a >> 16);
        idt[i].off_hi = (uint32_t)(a >> 32);
        idt[i].zero = 0;
    }
    struct idt_ptr p = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
    __asm__ __volatile__("lidt %0" : : "m"(p) : "memory");
}

/* Solo5's struct x86_trap_regs: what the trap stubs leave on the stack. */
struct hvt_trap_frame {
    uint64_t cr2, ec, rip, cs, rflags, rsp, ss;
};

/* The cookie must name 512 bytes of guest memory (HVT_HALT_COOKIE_MAX), which
 * the trap stack near the top of memory may not have: pass a copy in .bss. */
static union {
    struct hvt_trap_frame frame;
    uint8_t cookie[512];
} trap_cookie;

void hvt_trap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2,
              const struct hvt_trap_frame *frame)
    __attribute__((noreturn, used));
void hvt_trap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2,
              const struct hvt_trap_frame *frame)
{
    static volatile int in_trap;
    if (in_trap++)
        halt(255);              /* fault while reporting a fault */
    trap_cookie.frame = *frame;
    printf("trap: vector %u rip=0x%lx cr2=0x%lx err=0x%lx\n",
           (unsigned)vector, rip, cr2, error);
    halt_cookie(255, &trap_cookie);
}

/* ------------------------------------------------------------------ */
/* C entry                                                             */
/* ------------------------------------------------------------------ */

#define HVT_MAX_ARGS 128

static char cmdline_copy[HVT_CMDLINE_SIZE];
static char *argv_buf[HVT_MAX_ARGS + 2];

static int parse_cmdline(const char *cmdline)
{
    int argc = 0;
    argv_buf[argc++] = "guest";     /* argv[0]: programme name placeholder */
    if (cmdline == NULL)
        goto out;
    size_t n = 0;
    while (n < HVT_CMDLINE_SIZE - 1 && cmdline[n])
        n++;
    memcpy(cmdline_copy, cmdline, n);
    cmdline_copy[n] = 0;
    char *p = cmdline_copy;
    while (*p && argc <= HVT_MAX_ARGS) {
        while (*p == ' ')
            *p++ = 0;
        if (*p == 0)
            break;
        argv_buf[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
out:
    argv_buf[argc] = NULL;
    return argc;
}

void hvt_cstart(struct hvt_boot_info *bi) __attribute__((noreturn, used));
void hvt_cstart(struct hvt_boot_info *bi)
{
    hvt_bi = bi;
    gdt_install();
    idt_install();
    int argc = parse_cmdline((const char *)(uintptr_t)bi->cmdline);
    halt(main(argc, argv_buf));
}
