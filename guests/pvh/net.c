/* net: a virtio-net (0x1AF4:0x1041) guest on the polling driver in guests/pvh/virtio.
 *
 * Default mode: answers ARP and ICMP echo for 10.99.1.2 (`ip=a.b.c.d` on the command line),
 * prints "net: ready", then SUCCESS after 3 echo replies and exits 0; 30 s without them: exit 1.
 *
 * `tx N [dst=a.b.c.d] [dmac=xx:xx:xx:xx:xx:xx] [len=BYTES]`: sends N UDP frames (to port 9,
 * from port 4242; `len` is the Ethernet frame length without FCS, 60 by default, at most 1514)
 * to dst (default 10.99.1.1) as fast as the queue takes them. Without dmac the destination's MAC
 * is resolved with ARP first. Reports "tx: frames=N bytes=B tsc=T tsc_per_ms=F tsc_source=S pps=P"
 * and exits 0. The TSC rate comes from `tsc_khz=K` when given, else KVM's pvclock, else CPUID.
 *
 * Features: VERSION_1 and MAC only (no MRG_RXBUF), so every receive chain holds a whole frame
 * plus the 12-byte virtio_net_hdr_v1: 2 KiB buffers, enough for a 1514-byte frame. */
#include "virtio/virtio.h"

#define VIRTIO_DEV_NET      0x1041
#define VIRTIO_NET_F_MAC    (1ull << 5)
#define NET_HDR             12           /* virtio_net_hdr_v1 (num_buffers included) */
#define ETH_HLEN            14
#define ETHERTYPE_IPV4      0x0800
#define ETHERTYPE_ARP       0x0806
#define ARP_LEN             28
#define IPPROTO_ICMP        1
#define IPPROTO_UDP         17
#define WANTED_ECHOES       3
#define TIMEOUT_MS          30000
#define RX_BUFS             32
#define TX_BUFS             64
#define BUF_SIZE            2048

static struct vdev dev;
static struct vq rxq, txq;
static uint8_t rxbuf[RX_BUFS][BUF_SIZE] __attribute__((aligned(64)));
static uint8_t txbuf[TX_BUFS][BUF_SIZE] __attribute__((aligned(64)));
static uint8_t tx_busy[TX_BUFS];
static uint16_t tx_free;                 /* descriptors not in flight */
static uint16_t tx_slots;                /* usable tx descriptors (min(queue size, TX_BUFS)) */
static uint8_t my_mac[6] = { 0x02, 0x5e, 0x00, 0x00, 0x00, 0x02 };
static uint8_t my_ip[4] = { 10, 99, 1, 2 };

static int fail(const char *what, uint64_t v)
{
    serial_puts("FAIL ");
    serial_puts(what);
    serial_puts(" (");
    serial_puthex(v);
    serial_puts(")\n");
    return 1;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static int eq(const uint8_t *a, const uint8_t *b, int n) { while (n--) if (*a++ != *b++) return 0; return 1; }

/* Internet checksum (RFC 1071). */
static uint16_t inet_csum(const uint8_t *p, size_t len)
{
    uint32_t sum = 0;
    for (; len > 1; p += 2, len -= 2) sum += get16(p);
    if (len) sum += (uint32_t)p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static int parse_ip(const char *s, uint8_t ip[4])
{
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) { v = v * 10 + (unsigned)(*s++ - '0'); digits++; }
        if (digits == 0 || v > 255) return -1;
        ip[i] = (uint8_t)v;
        if (i < 3 && *s++ != '.') return -1;
    }
    return *s == 0 ? 0 : -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        int h = hexval(s[0]), l = h < 0 ? -1 : hexval(s[1]);
        if (l < 0) return -1;
        mac[i] = (uint8_t)(h << 4 | l);
        s += 2;
        if (i < 5 && *s++ != ':') return -1;
    }
    return *s == 0 ? 0 : -1;
}

static void put_ip(const uint8_t ip[4])
{
    for (int i = 0; i < 4; i++) { serial_putu(ip[i]); if (i < 3) serial_putc('.'); }
}

static void put_mac(const uint8_t m[6])
{
    for (int i = 0; i < 6; i++) {
        serial_putc("0123456789abcdef"[m[i] >> 4]);
        serial_putc("0123456789abcdef"[m[i] & 15]);
        if (i < 5) serial_putc(':');
    }
}

/* ---- TSC rate ---- */

/* TSC ticks per ms: `tsc_khz=` from the command line, else KVM's paravirtual clock (its
 * tsc_to_system_mul is exact), else the driver's CPUID guess (1 GHz when CPUID has no leaf 0x15). */
static uint64_t tsc_ms;
static const char *tsc_source = "cpuid";

struct pvclock { uint32_t version, pad0; uint64_t tsc_timestamp, system_time; uint32_t mul; int8_t shift; uint8_t flags, pad[2]; };
static volatile struct pvclock pvclock __attribute__((aligned(64)));

static void cpuid2(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static uint64_t kvmclock_tsc_per_ms(void)
{
    uint32_t r[4];
    cpuid2(0x40000000, r);
    /* "KVMKVMKVM\0\0\0" in ebx, ecx, edx; leaf 0x40000001 eax bit 3: KVM_FEATURE_CLOCKSOURCE2. */
    if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < 0x40000001) return 0;
    cpuid2(0x40000001, r);
    if (!(r[0] & (1u << 3))) return 0;
    uint64_t pa = (uintptr_t)&pvclock | 1;
    __asm__ volatile("wrmsr" :: "c"(0x4b564d01u), "a"((uint32_t)pa), "d"((uint32_t)(pa >> 32)) : "memory");
    uint64_t end = rdtsc() + 100 * tsc_per_ms();
    while (pvclock.mul == 0 && rdtsc() < end) { }
    uint32_t mul = pvclock.mul;
    int shift = pvclock.shift;
    __asm__ volatile("wrmsr" :: "c"(0x4b564d01u), "a"(0u), "d"(0u) : "memory");   /* off again */
    if (!mul) return 0;
    /* ns = ((ticks << shift) * mul) >> 32 (shift may be negative). */
    uint64_t t = (1000000ull << 32) / mul;
    return shift >= 0 ? t >> shift : t << -shift;
}

static uint64_t tsc_rate(void)
{
    if (!tsc_ms) {
        tsc_ms = kvmclock_tsc_per_ms();
        if (tsc_ms) tsc_source = "kvmclock"; else tsc_ms = tsc_per_ms();
    }
    return tsc_ms;
}

/* ---- queues ---- */

static void rx_post(uint16_t id)
{
    rxq.desc[id].addr = (uintptr_t)rxbuf[id];
    rxq.desc[id].len = BUF_SIZE;
    rxq.desc[id].flags = VRING_DESC_F_WRITE;
    rxq.desc[id].next = 0;
    vq_publish(&rxq, id);
}

/* Takes back every completed transmit descriptor. */
static void tx_reclaim(void)
{
    uint32_t id, len;
    while (vq_poll_used(&txq, &id, &len))
        if (id < tx_slots && tx_busy[id]) { tx_busy[id] = 0; tx_free++; }
}

/* A free transmit slot (its frame starts at txbuf[slot] + NET_HDR), or -1 after 1 s. */
static int tx_slot(void)
{
    uint64_t end = rdtsc() + 1000 * tsc_per_ms();
    for (;;) {
        tx_reclaim();
        if (tx_free)
            for (int i = 0; i < tx_slots; i++) if (!tx_busy[i]) return i;
        if (rdtsc() > end) return -1;
        __asm__ volatile("pause");
    }
}

/* Publishes slot `s` holding a `len`-byte frame (header zeroed here); kicks when `kick`. */
static void tx_post(int s, uint32_t len, int kick)
{
    vmemset(txbuf[s], 0, NET_HDR);
    txq.desc[s].addr = (uintptr_t)txbuf[s];
    txq.desc[s].len = NET_HDR + len;
    txq.desc[s].flags = 0;
    txq.desc[s].next = 0;
    tx_busy[s] = 1;
    tx_free--;
    vq_publish(&txq, (uint16_t)s);
    if (kick) vq_kick(&txq);
}

static void send_copy(const uint8_t *frame, uint32_t len)
{
    int s = tx_slot();
    if (s < 0) { serial_puts("net: transmit queue stuck\n"); return; }
    vmemcpy(txbuf[s] + NET_HDR, frame, len);
    tx_post(s, len, 1);
}

/* ---- frames ---- */

static uint8_t reply[BUF_SIZE] __attribute__((aligned(64)));

static void handle_arp(const uint8_t *f, uint32_t len)
{
    const uint8_t *a = f + ETH_HLEN;
    if (len < ETH_HLEN + ARP_LEN) return;
    if (get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 || get16(a + 6) != 1) return;
    if (!eq(a + 24, my_ip, 4)) return;
    uint8_t *r = reply, *ra = reply + ETH_HLEN;
    vmemcpy(r, a + 8, 6);
    vmemcpy(r + 6, my_mac, 6);
    put16(r + 12, ETHERTYPE_ARP);
    put16(ra, 1); put16(ra + 2, ETHERTYPE_IPV4); ra[4] = 6; ra[5] = 4;
    put16(ra + 6, 2);
    vmemcpy(ra + 8, my_mac, 6);
    vmemcpy(ra + 14, my_ip, 4);
    vmemcpy(ra + 18, a + 8, 6);
    vmemcpy(ra + 24, a + 14, 4);
    send_copy(reply, ETH_HLEN + ARP_LEN);
    serial_puts("arp: replied to ");
    put_ip(a + 14);
    serial_puts("\n");
}

/* Returns 1 when an echo request was answered. */
static int handle_ipv4(const uint8_t *f, uint32_t len)
{
    const uint8_t *ip = f + ETH_HLEN;
    if (len < ETH_HLEN + 20) return 0;
    unsigned ihl = (ip[0] & 0x0f) * 4u, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 || ETH_HLEN + total > len) return 0;
    if (ETH_HLEN + total > sizeof reply) return 0;
    if (inet_csum(ip, ihl) != 0) return 0;
    if (ip[9] != IPPROTO_ICMP || !eq(ip + 16, my_ip, 4)) return 0;
    if ((get16(ip + 6) & 0x3fff) != 0) return 0;
    const uint8_t *icmp = ip + ihl;
    size_t icmp_len = total - ihl;
    if (icmp[0] != 8 || icmp[1] != 0 || inet_csum(icmp, icmp_len) != 0) return 0;

    vmemcpy(reply, f, ETH_HLEN + total);
    uint8_t *rip = reply + ETH_HLEN, *ricmp = rip + ihl;
    vmemcpy(reply, f + 6, 6);
    vmemcpy(reply + 6, my_mac, 6);
    vmemcpy(rip + 16, ip + 12, 4);
    vmemcpy(rip + 12, my_ip, 4);
    rip[8] = 64;
    put16(rip + 10, 0);
    put16(rip + 10, inet_csum(rip, ihl));
    ricmp[0] = 0;
    put16(ricmp + 2, 0);
    put16(ricmp + 2, inet_csum(ricmp, icmp_len));
    send_copy(reply, ETH_HLEN + total);
    serial_puts("icmp: echo reply to ");
    put_ip(ip + 12);
    serial_puts(" seq=");
    serial_putu(get16(icmp + 6));
    serial_puts("\n");
    return 1;
}

/* Polls the receive queue once: handles every pending frame with `fn` and re-posts its buffer.
 * Returns the sum of fn's results. */
static int rx_poll(int (*fn)(const uint8_t *f, uint32_t len))
{
    uint32_t id, len;
    int got = 0, any = 0;
    while (vq_poll_used(&rxq, &id, &len)) {
        if (id >= RX_BUFS) { serial_puts("net: bad used id "); serial_putu(id); serial_puts("\n"); continue; }
        if (len > NET_HDR + ETH_HLEN && len <= BUF_SIZE) got += fn(rxbuf[id] + NET_HDR, len - NET_HDR);
        rx_post((uint16_t)id);
        any = 1;
    }
    if (any) vq_kick(&rxq);
    return got;
}

static int responder(const uint8_t *f, uint32_t len)
{
    uint16_t type = get16(f + 12);
    if (type == ETHERTYPE_ARP) { handle_arp(f, len); return 0; }
    if (type == ETHERTYPE_IPV4) return handle_ipv4(f, len);
    return 0;
}

/* ---- tx mode ---- */

static uint8_t dst_ip[4] = { 10, 99, 1, 1 };
static uint8_t dst_mac[6];
static int dst_mac_known;

static int arp_reply(const uint8_t *f, uint32_t len)
{
    const uint8_t *a = f + ETH_HLEN;
    if (get16(f + 12) != ETHERTYPE_ARP || len < ETH_HLEN + ARP_LEN) return 0;
    if (get16(a + 6) == 1) { handle_arp(f, len); return 0; }   /* answer requests meanwhile */
    if (get16(a + 6) != 2 || !eq(a + 14, dst_ip, 4)) return 0;
    vmemcpy(dst_mac, a + 8, 6);
    dst_mac_known = 1;
    return 1;
}

static int resolve(void)
{
    for (int attempt = 0; attempt < 5 && !dst_mac_known; attempt++) {
        uint8_t *r = reply, *ra = reply + ETH_HLEN;
        vmemset(r, 0xff, 6);
        vmemcpy(r + 6, my_mac, 6);
        put16(r + 12, ETHERTYPE_ARP);
        put16(ra, 1); put16(ra + 2, ETHERTYPE_IPV4); ra[4] = 6; ra[5] = 4;
        put16(ra + 6, 1);
        vmemcpy(ra + 8, my_mac, 6);
        vmemcpy(ra + 14, my_ip, 4);
        vmemset(ra + 18, 0, 6);
        vmemcpy(ra + 24, dst_ip, 4);
        send_copy(reply, ETH_HLEN + ARP_LEN);
        uint64_t end = rdtsc() + 1000 * tsc_per_ms();
        while (!dst_mac_known && rdtsc() < end) rx_poll(arp_reply);
    }
    return dst_mac_known ? 0 : -1;
}

static void build_udp(uint8_t *f, uint32_t len)
{
    vmemset(f, 0, len);
    vmemcpy(f, dst_mac, 6);
    vmemcpy(f + 6, my_mac, 6);
    put16(f + 12, ETHERTYPE_IPV4);
    uint8_t *ip = f + ETH_HLEN, *udp = ip + 20;
    uint32_t total = len - ETH_HLEN;
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)total);
    put16(ip + 6, 0x4000);           /* DF */
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    vmemcpy(ip + 12, my_ip, 4);
    vmemcpy(ip + 16, dst_ip, 4);
    put16(ip + 10, inet_csum(ip, 20));
    put16(udp, 4242);
    put16(udp + 2, 9);
    put16(udp + 4, (uint16_t)(total - 20));
    /* UDP checksum 0: none (IPv4). Payload: zeros. */
}

static int transmit(uint64_t n, uint32_t len)
{
    if (!dst_mac_known && resolve()) return fail("ARP for the destination got no reply", 0);
    serial_puts("tx: to ");
    put_mac(dst_mac);
    serial_puts(" ");
    put_ip(dst_ip);
    serial_puts(" frames=");
    serial_putu(n);
    serial_puts(" len=");
    serial_putu(len);
    serial_puts("\n");
    tx_reclaim();
    for (int i = 0; i < tx_slots; i++) if (!tx_busy[i]) build_udp(txbuf[i] + NET_HDR, len);
    uint64_t sent = 0, start = rdtsc(), stall = start + 5000 * tsc_per_ms();
    while (sent < n) {
        /* Publish every free slot, then one kick for the batch. Frames are prebuilt: only the
         * descriptor is rewritten. */
        int batch = 0;
        for (int i = 0; i < tx_slots && sent < n; i++) {
            if (tx_busy[i]) continue;
            txq.desc[i].addr = (uintptr_t)txbuf[i];
            txq.desc[i].len = NET_HDR + len;
            txq.desc[i].flags = 0;
            tx_busy[i] = 1;
            tx_free--;
            vq_publish(&txq, (uint16_t)i);
            sent++;
            batch++;
        }
        if (batch) { vq_kick(&txq); stall = rdtsc() + 5000 * tsc_per_ms(); }
        tx_reclaim();
        if (rdtsc() > stall) return fail("transmit stalled after frames", sent);
        /* Keep the receive queue drained (port unreachables and the like). */
        rx_poll(arp_reply);
    }
    uint64_t end = rdtsc() + 5000 * tsc_per_ms();
    while (tx_free < tx_slots && rdtsc() < end) tx_reclaim();
    uint64_t ticks = rdtsc() - start;
    if (tx_free < tx_slots) return fail("transmit did not complete", tx_slots - tx_free);
    uint64_t f = tsc_rate();
    serial_puts("tx: frames=");
    serial_putu(n);
    serial_puts(" bytes=");
    serial_putu(n * len);
    serial_puts(" tsc=");
    serial_putu(ticks);
    serial_puts(" tsc_per_ms=");
    serial_putu(f);
    serial_puts(" tsc_source=");
    serial_puts(tsc_source);
    serial_puts(" pps=");
    serial_putu(ticks ? n * f * 1000 / ticks : 0);
    serial_puts("\n");
    serial_puts("SUCCESS\n");
    return 0;
}

int guest_main(struct hvm_start_info *si)
{
    const char *p = si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
    char w[64];
    uint64_t tx_count = 0;
    uint32_t frame_len = 60;
    int tx_mode = 0;
    while (next_word(&p, w, sizeof w)) {
        if (w[0] == 'i' && w[1] == 'p' && w[2] == '=') {
            if (parse_ip(w + 3, my_ip)) return fail("bad ip=", 0);
        } else if (vstreq(w, "tx")) {
            tx_mode = 1;
            if (!next_word(&p, w, sizeof w)) return fail("tx needs a frame count", 0);
            tx_count = parse_size(w);
        } else if (w[0] == 'd' && w[1] == 's' && w[2] == 't' && w[3] == '=') {
            if (parse_ip(w + 4, dst_ip)) return fail("bad dst=", 0);
        } else if (w[0] == 'd' && w[1] == 'm' && w[2] == 'a' && w[3] == 'c' && w[4] == '=') {
            if (parse_mac(w + 5, dst_mac)) return fail("bad dmac=", 0);
            dst_mac_known = 1;
        } else if (w[0] == 't' && w[1] == 's' && w[2] == 'c' && w[3] == '_' && w[4] == 'k' && w[5] == 'h' && w[6] == 'z' && w[7] == '=') {
            tsc_ms = parse_size(w + 8);
            tsc_source = "tsc_khz=";
        } else if (w[0] == 'l' && w[1] == 'e' && w[2] == 'n' && w[3] == '=') {
            frame_len = (uint32_t)parse_size(w + 4);
            if (frame_len < 60 || frame_len > 1514) return fail("len= must be 60..1514", frame_len);
        }
        /* Other words (a kernel-style command line) are ignored. */
    }

    if (vdev_find(VIRTIO_DEV_NET, 0, &dev)) return fail("no virtio-net device", 0);
    uint64_t feat = vdev_negotiate(&dev, VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC);
    if (!feat) return fail("feature negotiation", 0);
    if (feat & VIRTIO_NET_F_MAC) {
        if (!dev.devcfg || dev.devcfg_len < 6) return fail("MAC offered without device configuration", 0);
        for (int i = 0; i < 6; i++) my_mac[i] = vcfg8(&dev, (uint32_t)i);
    }
    if (vq_setup(&dev, &rxq, 0, 0, 0, 1)) return fail("receive queue setup", 0);
    if (vq_setup(&dev, &txq, 1, 0, 1, 1)) return fail("transmit queue setup", 0);
    if (rxq.size < RX_BUFS) return fail("receive queue smaller than the buffers", rxq.size);
    tx_slots = txq.size < TX_BUFS ? txq.size : TX_BUFS;
    tx_free = tx_slots;
    uint8_t s = vdev_driver_ok(&dev);
    if (!(s & VIRTIO_STATUS_DRIVER_OK) || (s & VIRTIO_STATUS_NEEDS_RESET)) return fail("DRIVER_OK", s);
    for (uint16_t i = 0; i < RX_BUFS; i++) rx_post(i);
    vq_kick(&rxq);

    serial_puts("net: mac=");
    put_mac(my_mac);
    serial_puts(" ip=");
    put_ip(my_ip);
    serial_puts(" features=");
    serial_puthex(feat);
    serial_puts(" tsc_per_ms=");
    serial_putu(tsc_rate());
    serial_puts(" (");
    serial_puts(tsc_source);
    serial_puts(")\n");
    serial_puts("net: ready\n");

    if (tx_mode) return transmit(tx_count, frame_len);

    int answered = 0;
    uint64_t end = rdtsc() + (uint64_t)TIMEOUT_MS * tsc_rate();
    while (rdtsc() < end) {
        answered += rx_poll(responder);
        tx_reclaim();
        if (answered >= WANTED_ECHOES) { serial_puts("SUCCESS\n"); return 0; }
        __asm__ volatile("pause");
    }
    serial_puts("FAIL timed out after 30 s (");
    serial_putu((uint64_t)answered);
    serial_puts(" echo requests answered)\n");
    return 1;
}
