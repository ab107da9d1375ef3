/*
 * boottime — time one VMM run from process start to a marker line and to process exit.
 *
 *   boottime [-t TIMEOUT_S] [-e WANT_STATUS] [-m DELAY_MS] NAME MARKER -- CMD [ARG...]
 *
 * Reads CLOCK_MONOTONIC, forks and execs CMD with stdout and stderr on a pipe (stdin /dev/null),
 * and watches the pipe and a pidfd of the child with poll(2). It records
 *   init_ms  when a line that is MARKER, or MARKER, a blank and a word, is read (a trailing \r or
 *            blanks ignored)
 *   exit_ms  when the child has exited (its pidfd becomes readable)
 * both in ms since the clock was read before fork, and prints one line on stdout:
 *   T NAME INIT_MS EXIT_MS STATUS WORD     (STATUS: exit status, or 128+N on signal N; WORD: the
 *                                           word after the marker, - if none)
 * When the marker did not appear, STATUS differs from WANT_STATUS (-e, default 0) or the run timed
 * out (-t, default 120 s; the child is killed with SIGKILL), the line starts with F instead of T
 * (INIT_MS is - without a marker) and the child's output follows between
 *   --- output of NAME ---  and  --- end of output ---
 * With -m, DELAY_MS after the marker the child's memory is read from /proc/PID/smaps and the T
 * line ends with ` mem RSS_KB PSS_KB GUEST_RSS_KB GUEST_PSS_KB`: the whole process, and its
 * largest mapping of 32 MiB or more (the guest's RAM); `mem - - - -` when the child had exited.
 * Exit status: 0 for a T line, 1 for an F line, 2 on a usage or system error.
 *
 * Built by bench/boot with gcc -O2 -static; runs inside the L1 VM of scripts/nested-kvm.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define OUT_CAP (4u << 20) /* keep at most 4 MiB of the child's output */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: boottime [-t TIMEOUT_S] [-e WANT_STATUS] [-m DELAY_MS] NAME MARKER -- CMD [ARG...]\n");
    exit(2);
}

/* The memory of `pid` (smaps): totals and the largest mapping of at least 32 MiB (guest RAM). */
static char mem[96] = "";
static void sample_memory(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(mem, sizeof mem, " mem - - - -"); return; }
    long rss = 0, pss = 0, size = 0, cur_rss = 0, cur_pss = 0, best_size = 0, guest_rss = 0, guest_pss = 0;
    long v;
    for (;;) {
        int end = !fgets(line, sizeof line, f);
        /* A mapping's header starts with its address (lower-case hex); its fields with a name. */
        int header = !end && ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'));
        if (end || header) {
            if (size >= 32 * 1024 && size > best_size) { best_size = size; guest_rss = cur_rss; guest_pss = cur_pss; }
            if (end) break;
            size = cur_rss = cur_pss = 0;
            continue;
        }
        if (sscanf(line, "Size: %ld kB", &v) == 1) size = v;
        else if (sscanf(line, "Rss: %ld kB", &v) == 1) { rss += v; cur_rss = v; }
        else if (sscanf(line, "Pss: %ld kB", &v) == 1) { pss += v; cur_pss = v; }
    }
    fclose(f);
    snprintf(mem, sizeof mem, " mem %ld %ld %ld %ld", rss, pss, guest_rss, guest_pss);
}

static char *out;
static size_t out_len;

/* Append to the kept output; returns the offset where the new bytes start. */
static size_t keep(const char *buf, size_t n)
{
    size_t at = out_len;
    if (out_len + n > OUT_CAP) n = OUT_CAP - out_len;
    memcpy(out + out_len, buf, n);
    out_len += n;
    return at;
}

static char word[64] = "-";

/* Is out[start, end) (one line without its \n) the marker, alone or followed by a blank and a word
 * (kept in `word`)? Trailing \r and blanks are ignored. */
static int is_marker(size_t start, size_t end, const char *marker, size_t mlen)
{
    while (end > start && (out[end - 1] == '\r' || out[end - 1] == ' ' || out[end - 1] == '\t')) end--;
    if (end - start < mlen || memcmp(out + start, marker, mlen) != 0) return 0;
    size_t w = start + mlen;
    if (w == end) return 1;
    if (out[w] != ' ' && out[w] != '\t') return 0;
    while (w < end && (out[w] == ' ' || out[w] == '\t')) w++;
    size_t n = 0;
    while (w < end && out[w] != ' ' && out[w] != '\t' && n < sizeof word - 1) word[n++] = out[w++];
    if (n) word[n] = 0;
    return 1;
}

int main(int argc, char **argv)
{
    double timeout_s = 120;
    int want = 0, opt;
    double mem_delay_ms = -1;
    while ((opt = getopt(argc, argv, "+t:e:m:")) != -1) {
        switch (opt) {
        case 't': timeout_s = atof(optarg); break;
        case 'e': want = atoi(optarg); break;
        case 'm': mem_delay_ms = atof(optarg); break;
        default: usage();
        }
    }
    if (argc - optind < 4 || strcmp(argv[optind + 2], "--") != 0) usage();
    const char *name = argv[optind], *marker = argv[optind + 1];
    char **cmd = argv + optind + 3;
    size_t mlen = strlen(marker);

    out = malloc(OUT_CAP);
    int p[2];
    if (!out || pipe2(p, O_CLOEXEC) != 0) { perror("boottime: pipe"); return 2; }

    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) { perror("boottime: fork"); return 2; }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execvp(cmd[0], cmd);
        fprintf(stderr, "boottime: exec %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) { perror("boottime: pidfd_open"); kill(pid, SIGKILL); return 2; }

    double t_init = -1, t_exit = -1;
    int pipe_open = 1, timed_out = 0;
    size_t line_start = 0;
    char buf[65536];
    while (t_exit < 0 || pipe_open) {
        struct pollfd fds[2] = { { p[0], POLLIN, 0 }, { pidfd, POLLIN, 0 } };
        int nfds = 0;
        struct pollfd use[2];
        if (pipe_open) use[nfds++] = fds[0];
        if (t_exit < 0) use[nfds++] = fds[1];
        double left = timeout_s * 1e3 - (now_ms() - t0);
        if (left <= 0) {
            if (t_exit < 0) { kill(pid, SIGKILL); timed_out = 1; }
            /* the child is gone (or killed): stop reading even if someone still holds the pipe */
            if (t_exit >= 0) break;
            left = 1000;
        }
        if (mem_delay_ms >= 0 && t_init >= 0 && !mem[0]) {
            double until = t_init + mem_delay_ms - now_ms();
            if (until <= 0) {
                if (t_exit < 0) sample_memory(pid); else snprintf(mem, sizeof mem, " mem - - - -");
                continue;
            }
            if (until < left) left = until;
        }
        int r = poll(use, nfds, left > 1e6 ? 1000000 : (int)left + 1);
        double t = now_ms();
        if (r < 0) { if (errno == EINTR) continue; perror("boottime: poll"); return 2; }
        for (int i = 0; i < nfds; i++) {
            if (!use[i].revents) continue;
            if (use[i].fd == pidfd) {
                t_exit = t;
            } else {
                ssize_t n = read(p[0], buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) { pipe_open = 0; continue; }
                size_t at = keep(buf, (size_t)n);
                if (t_init < 0) {
                    for (size_t j = at; j < out_len; j++) {
                        if (out[j] != '\n') continue;
                        if (is_marker(line_start, j, marker, mlen)) { t_init = t; break; }
                        line_start = j + 1;
                    }
                }
            }
        }
    }
    /* a last line without \n */
    if (t_init < 0 && line_start < out_len && is_marker(line_start, out_len, marker, mlen)) t_init = t_exit;

    int ws, status;
    if (waitpid(pid, &ws, 0) < 0) { perror("boottime: waitpid"); return 2; }
    status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);

    int ok = t_init >= 0 && status == want && !timed_out;
    char init_s[32];
    if (t_init >= 0) snprintf(init_s, sizeof init_s, "%.3f", t_init - t0);
    else snprintf(init_s, sizeof init_s, "-");
    if (mem_delay_ms >= 0 && !mem[0]) snprintf(mem, sizeof mem, " mem - - - -");
    printf("%c %s %s %.3f %d %s%s%s\n", ok ? 'T' : 'F', name, init_s, t_exit - t0, status, word,
           timed_out ? " timeout" : "", mem);
    if (!ok) {
        printf("--- output of %s ---\n", name);
        fwrite(out, 1, out_len, stdout);
        if (out_len && out[out_len - 1] != '\n') putchar('\n');
        printf("--- end of output ---\n");
    }
    fflush(stdout);
    return ok ? 0 : 1;
}
