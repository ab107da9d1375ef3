/*
 * hvt_guest.h - freestanding definitions for Swiftlet hvt test guests.
 *
 * Written for Swiftlet from the published description of the Solo5 "hvt"
 * guest/tender ABI (x86_64). Everything here is our own code.
 *
 * Contents:
 *   - hypercall numbers, argument structures and the PIO hypercall primitive
 *   - struct hvt_boot_info (passed in %rdi at _start)
 *   - Solo5 ELF note formats (ABI1, MFT1) and the HVT_MANIFEST() macro
 *   - the ABI-2 network ring (Solo5 v0.11+ ring I/O) shared with the tender
 *   - prototypes of the tiny runtime in runtime/
 *
 * HVT_ABI selects the ABI the guest is built for: 2 (the default; what
 * Solo5 0.8.0 .. v0.12.1 build) or 1 (Solo5 0.7 and older). build.sh
 * builds every guest for both.
 */
#ifndef HVT_GUEST_H
#define HVT_GUEST_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdarg.h>

#ifndef HVT_ABI
#define HVT_ABI 2
#endif

/* ------------------------------------------------------------------ */
/* Hypercalls                                                          */
/* ------------------------------------------------------------------ */

#define HVT_HYPERCALL_PIO_BASE 0x500
#define HVT_HYPERCALL_PIO(nr)  (HVT_HYPERCALL_PIO_BASE + (nr))

enum hvt_hypercall_nr {
    HVT_HYPERCALL_WALLTIME    = 1,
    HVT_HYPERCALL_PUTS        = 2,
    HVT_HYPERCALL_POLL        = 3,
    HVT_HYPERCALL_BLOCK_WRITE = 4,
    HVT_HYPERCALL_BLOCK_READ  = 5,
    HVT_HYPERCALL_NET_WRITE   = 6,
    HVT_HYPERCALL_NET_READ    = 7,
    HVT_HYPERCALL_HALT        = 8,
};

/* Return codes (the "ret" field). */
#define SOLO5_R_OK      0
#define SOLO5_R_AGAIN   1
#define SOLO5_R_EINVAL  2
#define SOLO5_R_EUNSPEC 3

struct hvt_hc_walltime {
    uint64_t nsecs;                 /* OUT */
};

struct hvt_hc_puts {
    uint64_t data;                  /* IN: guest address */
    uint64_t len;                   /* IN */
};

struct hvt_hc_poll {
    uint64_t timeout_nsecs;         /* IN: relative */
    uint64_t ready_set;             /* OUT: bit i = manifest entry i ready */
    int ret;                        /* OUT */
};

struct hvt_hc_block_write {
    uint64_t handle;                /* IN: manifest index */
    uint64_t offset;                /* IN: bytes */
    uint64_t data;                  /* IN: guest address */
    uint64_t len;                   /* IN */
    int ret;                        /* OUT */
};

struct hvt_hc_block_read {
    uint64_t handle;                /* IN */
    uint64_t offset;                /* IN */
    uint64_t data;                  /* IN */
    uint64_t len;                   /* IN/OUT */
    int ret;                        /* OUT */
};

struct hvt_hc_net_write {
    uint64_t handle;                /* IN */
    uint64_t data;                  /* IN */
    uint64_t len;                   /* IN */
    int ret;                        /* OUT */
};

struct hvt_hc_net_read {
    uint64_t handle;                /* IN */
    uint64_t data;                  /* IN */
    uint64_t len;                   /* IN/OUT */
    int ret;                        /* OUT */
};

struct hvt_hc_halt {
    uint64_t cookie;                /* IN: may be 0 */
    int exit_status;                /* IN */
};

_Static_assert(sizeof(struct hvt_hc_walltime) == 8, "walltime size");
_Static_assert(sizeof(struct hvt_hc_puts) == 16, "puts size");
_Static_assert(sizeof(struct hvt_hc_poll) == 24, "poll size");
_Static_assert(offsetof(struct hvt_hc_poll, ret) == 16, "poll.ret");
_Static_assert(sizeof(struct hvt_hc_block_write) == 40, "block_write size");
_Static_assert(offsetof(struct hvt_hc_block_write, ret) == 32, "block_write.ret");
_Static_assert(sizeof(struct hvt_hc_block_read) == 40, "block_read size");
_Static_assert(offsetof(struct hvt_hc_block_read, len) == 24, "block_read.len");
_Static_assert(sizeof(struct hvt_hc_net_write) == 32, "net_write size");
_Static_assert(offsetof(struct hvt_hc_net_write, ret) == 24, "net_write.ret");
_Static_assert(sizeof(struct hvt_hc_net_read) == 32, "net_read size");
_Static_assert(offsetof(struct hvt_hc_net_read, len) == 16, "net_read.len");
_Static_assert(sizeof(struct hvt_hc_halt) == 16, "halt size");
_Static_assert(offsetof(struct hvt_hc_halt, exit_status) == 8, "halt.exit_status");

/*
 * Issue hypercall NR with argument block ARG: "outl %eax, %dx" with
 * dx = 0x500 + NR and eax = the (32-bit, identity mapped) address of ARG.
 * The "memory" clobber makes sure ARG is written before and re-read after.
 */
static inline void hvt_do_hypercall(int nr, volatile void *arg)
{
    __asm__ __volatile__("outl %0, %1"
                         :
                         : "a"((uint32_t)(uintptr_t)arg),
                           "d"((uint16_t)HVT_HYPERCALL_PIO(nr))
                         : "memory");
}

/* ------------------------------------------------------------------ */
/* Manifest (MFT1)                                                     */
/* ------------------------------------------------------------------ */

#define MFT_VERSION          1
#define MFT_MAX_ENTRIES      64
#define MFT_NAME_SIZE        68          /* including the terminating NUL */
#define MFT_NAME_MAX         (MFT_NAME_SIZE - 1)

#define MFT_DEV_BLOCK_BASIC  1u
#define MFT_DEV_NET_BASIC    2u
#define MFT_RESERVED_FIRST   (1u << 30)

struct mft_block_basic {
    uint64_t capacity;                  /* bytes */
    uint16_t block_size;                /* bytes */
};

struct mft_net_basic {
    uint8_t mac[6];
    uint16_t mtu;
};

struct mft_entry {
    char name[MFT_NAME_SIZE];
    uint32_t type;
    union {
        struct mft_block_basic block_basic;
        struct mft_net_basic net_basic;
    } u;
    union {
        int hostfd;
        void *data;
    } b;
    bool attached;
};

_Static_assert(offsetof(struct mft_entry, name) == 0, "mft_entry.name");
_Static_assert(offsetof(struct mft_entry, type) == 68, "mft_entry.type");
_Static_assert(offsetof(struct mft_entry, u) == 72, "mft_entry.u");
_Static_assert(sizeof(((struct mft_entry *)0)->u) == 16, "mft_entry.u size");
_Static_assert(offsetof(struct mft_entry, u.block_basic.block_size) == 80,
               "mft_entry.u.block_basic.block_size");
_Static_assert(offsetof(struct mft_entry, u.net_basic.mtu) == 78,
               "mft_entry.u.net_basic.mtu");
_Static_assert(offsetof(struct mft_entry, b) == 88, "mft_entry.b");
_Static_assert(offsetof(struct mft_entry, attached) == 96, "mft_entry.attached");
_Static_assert(sizeof(struct mft_entry) == 104, "mft_entry size");
_Static_assert(_Alignof(struct mft_entry) == 8, "mft_entry align");

/* The manifest as found at hvt_boot_info.mft (the tender's copy). */
struct mft {
    uint32_t version;
    uint32_t entries;
    struct mft_entry e[];
};
_Static_assert(sizeof(struct mft) == 8, "mft header size");
_Static_assert(offsetof(struct mft, e) == 8, "mft.e");

/* ------------------------------------------------------------------ */
/* ELF notes                                                           */
/* ------------------------------------------------------------------ */

#define SOLO5_NOTE_NAME      "Solo5"     /* n_namesz = 6, padded to 8 */
#define SOLO5_NOTE_NAMESZ    6
#define ABI1_NOTE_TYPE       0x31494241u /* "ABI1" */
#define MFT1_NOTE_TYPE       0x3154464du /* "MFT1" */
#define HVT_ABI_TARGET_HVT   1
#define HVT_ABI_VERSION      HVT_ABI

struct solo5_note_header {
    uint32_t n_namesz;
    uint32_t n_descsz;
    uint32_t n_type;
    char n_name[8];
};
_Static_assert(sizeof(struct solo5_note_header) == 20, "note header size");

struct abi1_note {
    struct solo5_note_header h;
    uint32_t abi_target;
    uint32_t abi_version;
    uint32_t reserved0;
    uint32_t reserved1;
};
_Static_assert(sizeof(struct abi1_note) == 36, "abi1 note size");

/* Entry initialisers for HVT_MANIFEST(). */
#define HVT_MFT_BLOCK(NAME) { .name = NAME, .type = MFT_DEV_BLOCK_BASIC }
#define HVT_MFT_NET(NAME)   { .name = NAME, .type = MFT_DEV_NET_BASIC }
#define HVT_MFT_RESERVED()  { .name = "", .type = MFT_RESERVED_FIRST }

/*
 * HVT_MANIFEST(entries...) - emit the MFT1 note for this guest.
 * Use exactly once per guest (the linker script refuses a guest without a
 * manifest). Like Solo5's toolchain, entry 0 is always the reserved entry
 * (MFT_RESERVED_FIRST, empty name): solo5-hvt refuses a manifest without
 * it as invalid. So the listed devices get handles 1, 2, ... Examples:
 *
 *     HVT_MANIFEST();                                   -- no devices
 *     HVT_MANIFEST(HVT_MFT_BLOCK("storage"), HVT_MFT_NET("service"));
 *
 * Layout: 20-byte note header, 4 bytes of padding (struct mft is 8-byte
 * aligned), then struct mft with its entries. n_descsz counts everything
 * after the 20-byte header, padding included. Like Solo5's own binaries,
 * the note section is only 4-byte aligned (so generic ELF note readers
 * parse it with 4-byte padding rules); the linker scripts still place it
 * on an 8-byte boundary so the embedded struct mft is naturally aligned.
 */
#define HVT_MFT_COUNT_(...) \
    (sizeof((const struct mft_entry[]){ __VA_ARGS__ }) / sizeof(struct mft_entry))

#define HVT_MANIFEST_N_(N, ...)                                               \
    struct hvt_mft1_note {                                                    \
        struct solo5_note_header h;                                           \
        struct {                                                              \
            uint32_t version;                                                 \
            uint32_t entries;                                                 \
            struct mft_entry e[N];                                            \
        } __attribute__((aligned(8))) m;                                      \
    };                                                                        \
    _Static_assert((N) <= MFT_MAX_ENTRIES, "too many manifest entries");      \
    _Static_assert(offsetof(struct hvt_mft1_note, m) == 24, "mft1 note pad"); \
    __attribute__((section(".note.solo5.manifest"), aligned(4), used))        \
    const struct hvt_mft1_note hvt_manifest_note = {                          \
        .h = {                                                                \
            .n_namesz = SOLO5_NOTE_NAMESZ,                                    \
            .n_descsz = sizeof(struct hvt_mft1_note) -                        \
                        sizeof(struct solo5_note_header),                     \
            .n_type = MFT1_NOTE_TYPE,                                         \
            .n_name = SOLO5_NOTE_NAME,                                        \
        },                                                                    \
        .m = {                                                                \
            .version = MFT_VERSION,                                           \
            .entries = (N),                                                   \
            .e = { __VA_ARGS__ },                                             \
        },                                                                    \
    }

#define HVT_MANIFEST(...) \
    HVT_MANIFEST_N_(HVT_MFT_COUNT_(__VA_ARGS__) + 1, HVT_MFT_RESERVED(), __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Boot information                                                    */
/* ------------------------------------------------------------------ */

#define HVT_CMDLINE_SIZE 8192

struct hvt_boot_info {
    uint64_t mem_size;                  /* bytes of guest memory (below the ring) */
    uint64_t kernel_end;                /* first address after the ELF */
    uint64_t cpu_cycle_freq;            /* TSC Hz */
    uint64_t cmdline;                   /* address of NUL-terminated string */
    uint64_t mft;                       /* address of struct mft */
#if HVT_ABI >= 2
    uint32_t host_features;             /* HVT_FEATURE_* the tender offers */
    uint32_t guest_features;            /* 0: nobody writes it (solo5-hvt maps this page read-only) */
    uint64_t net_ring;                  /* address of struct hvt_ring, 0 if none */
#endif
};
#if HVT_ABI >= 2
_Static_assert(sizeof(struct hvt_boot_info) == 56, "boot info size");
_Static_assert(offsetof(struct hvt_boot_info, host_features) == 40, "boot_info.host_features");
_Static_assert(offsetof(struct hvt_boot_info, net_ring) == 48, "boot_info.net_ring");
#else
_Static_assert(sizeof(struct hvt_boot_info) == 40, "boot info size");
#endif
_Static_assert(offsetof(struct hvt_boot_info, mft) == 32, "boot_info.mft");

/* ------------------------------------------------------------------ */
/* Network ring (ABI 2, HVT_FEATURE_RING_IO)                            */
/* ------------------------------------------------------------------ */

#define HVT_FEATURE_RING_IO   (1u << 0)
#define HVT_RING_SIZE         1024          /* entries, and commits */
#define HVT_RING_MASK         (HVT_RING_SIZE - 1)
#define HVT_RING_BUF_SIZE     2048          /* bytes per write slot */
#define HVT_RING_KICK_PORT    0x600         /* 32-bit OUT: wake the tender's I/O thread */
#define HVT_RING_NET_WRITE    1
#define HVT_RING_NET_READ     2

/* Submission: written by the guest. */
struct hvt_ring_entry {
    uint32_t operation;
    uint32_t handle;
    uint64_t data;                      /* guest address of the frame */
    uint32_t len;
    uint32_t id;
    uint64_t reserved;
};

/* Completion of a read: written by the tender. */
struct hvt_ring_commit {
    uint32_t id;
    int32_t ret;
    uint32_t len;
    uint32_t reserved;
};

/* Indices run freely (uint32_t, wrapping); slot = index & HVT_RING_MASK. */
struct hvt_ring {
    volatile uint32_t ent_tail;         /* cache line 0: guest writes */
    volatile uint32_t com_head;
    uint8_t pad0[56];
    volatile uint32_t ent_head;         /* cache line 1: tender writes */
    volatile uint32_t com_tail;
    volatile uint32_t needs_kick;
    uint8_t pad1[52];
    struct hvt_ring_entry entries[HVT_RING_SIZE];
    struct hvt_ring_commit commits[HVT_RING_SIZE];
};
_Static_assert(sizeof(struct hvt_ring_entry) == 32, "ring entry size");
_Static_assert(sizeof(struct hvt_ring_commit) == 16, "ring commit size");
_Static_assert(offsetof(struct hvt_ring, ent_head) == 64, "ring.ent_head");
_Static_assert(offsetof(struct hvt_ring, entries) == 128, "ring.entries");
_Static_assert(sizeof(struct hvt_ring) == 128 + 1024 * 48, "ring size");

static inline void hvt_ring_kick(void)
{
    __asm__ __volatile__("outl %0, %1" : : "a"(0u), "d"((uint16_t)HVT_RING_KICK_PORT) : "memory");
}

/* ------------------------------------------------------------------ */
/* Runtime (runtime/runtime.c)                                         */
/* ------------------------------------------------------------------ */

extern struct hvt_boot_info *hvt_bi;    /* boot info, valid in main() */

int main(int argc, char **argv);

/* Console. puts() appends "\n" like libc's; hvt_write() writes raw bytes. */
void hvt_write(const char *buf, size_t len);
int puts(const char *s);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* libc bits gcc may call or that guests want. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
/* Parse a decimal (optionally negative) integer; *ok = 0 on junk. */
long hvt_atol(const char *s, int *ok);

/* Time. */
uint64_t walltime(void);                /* ns since the Unix epoch */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/*
 * Block until a device has input or TIMEOUT_NS passed. Returns the
 * hypercall's ret; *READY_SET (may be NULL) gets the ready bitmap.
 */
int hvt_poll(uint64_t timeout_ns, uint64_t *ready_set);
#define yield(t, rs) hvt_poll((t), (rs))

/* Devices. HANDLE is the device's index in the manifest. */
int block_write(uint64_t handle, uint64_t offset, const void *buf, size_t len);
int block_read(uint64_t handle, uint64_t offset, void *buf, size_t len);
int net_write(uint64_t handle, const void *buf, size_t len);
/* *READ_LEN gets the frame length on SOLO5_R_OK. */
int net_read(uint64_t handle, void *buf, size_t size, size_t *read_len);

/*
 * The ring (runtime/netring.c): net_write/net_read use it once
 * hvt_net_ring_start() returned 1 (ABI 2, the tender offers
 * HVT_FEATURE_RING_IO); before, and for guests that never call it, they
 * use the NET_WRITE/NET_READ hypercalls. Returns 0 when no ring is offered.
 */
int hvt_net_ring_start(void);
extern struct hvt_ring *hvt_net_ring;

/* Look a device up in the tender's manifest (boot info); NULL if absent. */
const struct mft_entry *hvt_mft_find(const char *name, uint32_t type,
                                     uint64_t *handle);

void halt(int status) __attribute__((noreturn));
void abort(void) __attribute__((noreturn));     /* halt(255) */

#endif /* HVT_GUEST_H */
