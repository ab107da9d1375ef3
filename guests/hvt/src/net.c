/*
 * net: answers ARP and ICMP echo for 10.99.0.2 (or --ip=a.b.c.d, or MirageOS's
 * --ipv4=a.b.c.d/n; --ipv4-gateway= is accepted) on net
 * device "service". After answering 3 echo requests (--echoes=N: N) prints
 * SUCCESS and exits 0; gives up after 30 s without traffic with status 1.
 * Uses the ABI-2 network ring when the tender offers it (--no-ring: the
 * hypercalls only). --quiet: no line per reply (for floods).
 */
#include "hvt_guest.h"

#ifndef NET_DEVICES
#define NET_DEVICES 1
HVT_MANIFEST(HVT_MFT_NET("service"));
#endif

#define NSEC_PER_SEC    1000000000ull
#define ETH_HLEN        14
#define ETHERTYPE_IPV4  0x0800
#define ETHERTYPE_ARP   0x0806
#define ARP_LEN         28
#define IPPROTO_ICMP    1
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO       8
#define MAX_FRAME       (65535 + ETH_HLEN)
#define TIMEOUT_SECS    30

static uint8_t frame[MAX_FRAME] __attribute__((aligned(16)));
/* Device d is manifest entry "service" (d = 0) or "backup" (d = 1), with
 * address 10.99.d.2; `cur` is the one the frame in `frame` came from. */
static const char *const dev_name[2] = { "service", "backup" };
static struct {
    uint8_t mac[6];
    uint8_t ip[4];
    uint64_t handle;
    long answered;
} dev[2] = { { .ip = { 10, 99, 0, 2 } }, { .ip = { 10, 99, 1, 2 } } };
static int cur;
#define my_mac (dev[cur].mac)
#define my_ip (dev[cur].ip)
#define handle (dev[cur].handle)
static int quiet;
static long wanted = 3;

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Internet checksum (RFC 1071) over LEN bytes. */
static uint16_t inet_csum(const uint8_t *p, size_t len)
{
    uint32_t sum = 0;
    for (; len > 1; p += 2, len -= 2)
        sum += get16(p);
    if (len)
        sum += (uint32_t)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static int parse_ip(const char *s, uint8_t ip[4])
{
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*s++ - '0');
            digits++;
        }
        if (digits == 0 || v > 255)
            return -1;
        ip[i] = (uint8_t)v;
        if (i < 3 && *s++ != '.')
            return -1;
    }
    return *s == 0 ? 0 : -1;
}

static void send_frame(size_t len)
{
    int ret = net_write(handle, frame, len);
    if (ret != SOLO5_R_OK)
        printf("net_write: ret %d\n", ret);
}

static void handle_arp(size_t len)
{
    uint8_t *a = frame + ETH_HLEN;
    if (len < ETH_HLEN + ARP_LEN)
        return;
    if (get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 ||
        a[5] != 4 || get16(a + 6) != 1)
        return;                                 /* not an Ethernet/IPv4 request */
    if (memcmp(a + 24, my_ip, 4) != 0)
        return;                                 /* not for us */
    uint8_t sha[6], spa[4];
    memcpy(sha, a + 8, 6);
    memcpy(spa, a + 14, 4);
    /* Ethernet: to the requester, from us. */
    memcpy(frame, sha, 6);
    memcpy(frame + 6, my_mac, 6);
    put16(a + 6, 2);                            /* reply */
    memcpy(a + 8, my_mac, 6);
    memcpy(a + 14, my_ip, 4);
    memcpy(a + 18, sha, 6);
    memcpy(a + 24, spa, 4);
    send_frame(ETH_HLEN + ARP_LEN);
    if (!quiet)
        printf("arp: replied to %u.%u.%u.%u\n", spa[0], spa[1], spa[2], spa[3]);
}

/* Returns 1 if an echo request was answered. */
static int handle_ipv4(size_t len)
{
    uint8_t *ip = frame + ETH_HLEN;
    if (len < ETH_HLEN + 20)
        return 0;
    unsigned ihl = (ip[0] & 0x0f) * 4u;
    unsigned total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 ||
        ETH_HLEN + total > len)
        return 0;
    if (inet_csum(ip, ihl) != 0)
        return 0;                               /* bad header checksum */
    if (ip[9] != IPPROTO_ICMP || memcmp(ip + 16, my_ip, 4) != 0)
        return 0;
    if ((get16(ip + 6) & 0x3fff) != 0)
        return 0;                               /* fragment: ignore */
    uint8_t *icmp = ip + ihl;
    size_t icmp_len = total - ihl;
    if (icmp[0] != ICMP_ECHO || icmp[1] != 0 || inet_csum(icmp, icmp_len) != 0)
        return 0;

    /* Ethernet: swap. */
    uint8_t tmp[6];
    memcpy(tmp, frame + 6, 6);
    memcpy(frame, tmp, 6);
    memcpy(frame + 6, my_mac, 6);
    /* IPv4: swap addresses, fresh TTL, new checksum. */
    uint8_t src[4];
    memcpy(src, ip + 12, 4);
    memcpy(ip + 16, src, 4);
    memcpy(ip + 12, my_ip, 4);
    ip[8] = 64;
    put16(ip + 10, 0);
    put16(ip + 10, inet_csum(ip, ihl));
    /* ICMP: echo reply, new checksum. */
    icmp[0] = ICMP_ECHO_REPLY;
    put16(icmp + 2, 0);
    put16(icmp + 2, inet_csum(icmp, icmp_len));
    send_frame(ETH_HLEN + total);
    if (!quiet)
        printf("icmp: echo reply to %u.%u.%u.%u id=%u seq=%u\n", src[0], src[1],
           src[2], src[3], get16(icmp + 4), get16(icmp + 6));
    return 1;
}

int main(int argc, char **argv)
{
    int use_ring = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-ring") == 0) {
            use_ring = 0;               /* decline the ring: hypercalls only */
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = 1;
        } else if (strncmp(argv[i], "--echoes=", 9) == 0) {
            int ok = 0;
            wanted = hvt_atol(argv[i] + 9, &ok);
            if (!ok || wanted <= 0) {
                printf("net: bad count '%s'\n", argv[i] + 9);
                return 2;
            }
        } else if (strncmp(argv[i], "--ip=", 5) == 0) {
            if (parse_ip(argv[i] + 5, dev[0].ip) != 0) {
                printf("net: bad address '%s'\n", argv[i] + 5);
                return 2;
            }
        } else if (strncmp(argv[i], "--ipv4=", 7) == 0) {
            /* MirageOS's own option (what an OCI runtime passes): A.B.C.D/N. */
            char address[16];
            size_t n = 0;
            const char *p = argv[i] + 7;
            while (p[n] && p[n] != '/' && n < sizeof address - 1) { address[n] = p[n]; n++; }
            address[n] = 0;
            if (parse_ip(address, dev[0].ip) != 0) {
                printf("net: bad address '%s'\n", argv[i] + 7);
                return 2;
            }
        } else if (strncmp(argv[i], "--ipv4-gateway=", 15) == 0) {
            /* Accepted as MirageOS accepts it; an echo server answers on its own link. */
        } else {
            printf("net: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }

    unsigned mtu = 0;
    for (cur = 0; cur < NET_DEVICES; cur++) {
        const struct mft_entry *e = hvt_mft_find(dev_name[cur], MFT_DEV_NET_BASIC, &handle);
        if (e == NULL || !e->attached) {
            printf("FAIL: net device '%s' missing or not attached\n", dev_name[cur]);
            return 1;
        }
        memcpy(my_mac, e->u.net_basic.mac, 6);
        mtu = e->u.net_basic.mtu;
        printf("%smac=%02x:%02x:%02x:%02x:%02x:%02x\n", cur ? "backup: " : "", my_mac[0], my_mac[1],
               my_mac[2], my_mac[3], my_mac[4], my_mac[5]);
        printf("%smtu=%u ip=%u.%u.%u.%u\n", cur ? "backup: " : "", mtu, my_ip[0], my_ip[1], my_ip[2],
               my_ip[3]);
    }
#if HVT_ABI >= 2
    printf("mem_size=%lu host_features=0x%x net_ring=0x%lx\n", hvt_bi->mem_size,
           hvt_bi->host_features, hvt_bi->net_ring);
#endif
    int ring = use_ring && hvt_net_ring_start();
    printf("net: io=%s\n", ring ? "ring" : "hypercalls");
    size_t rdsize = mtu + ETH_HLEN + 4;
    if (mtu == 0 || rdsize > sizeof frame)
        rdsize = sizeof frame;
    puts("net: ready");

    long answered = 0;
    uint64_t deadline = walltime() + TIMEOUT_SECS * NSEC_PER_SEC;
    while (walltime() < deadline) {
        uint64_t ready = 0;
        hvt_poll(NSEC_PER_SEC, &ready);
        for (cur = 0; cur < NET_DEVICES; cur++) {
            if (!(ready & (1ull << handle)))
                continue;
            deadline = walltime() + TIMEOUT_SECS * NSEC_PER_SEC;
            for (;;) {
                size_t len = 0;
                int ret = net_read(handle, frame, rdsize, &len);
                if (ret == SOLO5_R_AGAIN)
                    break;
                if (ret != SOLO5_R_OK) {
                    printf("net_read: ret %d\n", ret);
                    break;
                }
                if (len < ETH_HLEN)
                    continue;
                uint16_t type = get16(frame + 12);
                if (type == ETHERTYPE_ARP)
                    handle_arp(len);
                else if (type == ETHERTYPE_IPV4 && handle_ipv4(len)) {
                    answered++;
                    dev[cur].answered++;
                    int done = 1;
                    for (int d = 0; d < NET_DEVICES; d++)
                        done = done && dev[d].answered >= wanted;
                    if (done) {
                        puts("SUCCESS");
                        return 0;
                    }
                }
            }
        }
    }
    printf("FAIL: timed out after %d s without traffic (%ld echo requests answered)\n",
           TIMEOUT_SECS, answered);
    return 1;
}
