/*
 * api-mini: the least an API process can do, as the baseline for bench/api.
 *
 *   api-mini SOCKET
 *
 * Creates the Unix socket (mode 0600, a stale file replaced, as `swiftlet api` does), listens,
 * and answers every request on every connection with one fixed HTTP/1.1 response: the body
 * `swiftlet api` gives to GET / before InstanceStart. One connection at a time, one request per
 * connection (the response says Connection: close). SIGTERM/SIGINT remove the socket and exit.
 * No HTTP parsing beyond finding the end of the header block: the point is to measure what process
 * start-up plus socket/bind/listen/accept cost with nothing else in the way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BODY "{\"id\": \"anonymous-instance\", \"state\": \"Not started\", \"vmm_version\": \"0.4.0\", \"app_name\": \"Swiftlet\"}"

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: api-mini\r\n"
    "Content-Type: application/json\r\n"
    "Connection: close\r\n"
    "Content-Length: %zu\r\n"
    "\r\n"
    "%s";

static const char *socket_path;

static void on_stop(int sig)
{
    unlink(socket_path);
    _exit(128 + sig);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: api-mini SOCKET\n");
        return 2;
    }
    socket_path = argv[1];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof addr.sun_path) {
        fprintf(stderr, "api-mini: %s: path too long\n", socket_path);
        return 1;
    }
    strcpy(addr.sun_path, socket_path);

    char reply[512];
    int reply_len = snprintf(reply, sizeof reply, response, strlen(BODY), BODY);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("api-mini: socket"); return 1; }
    unlink(socket_path);
    /* umask around bind: the socket is created 0600 in one step, as swiftlet's is. */
    mode_t old = umask(077);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("api-mini: bind"); return 1; }
    umask(old);
    if (listen(fd, 128) < 0) { perror("api-mini: listen"); return 1; }

    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("api-mini: accept");
            return 1;
        }
        char buf[65536];
        size_t n = 0;
        while (n < sizeof buf) {
            ssize_t r = read(c, buf + n, sizeof buf - n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            n += (size_t)r;
            if (memmem(buf, n, "\r\n\r\n", 4)) break;
        }
        if (n > 0) {
            ssize_t done = 0;
            while (done < reply_len) {
                ssize_t w = write(c, reply + done, (size_t)(reply_len - done));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                done += w;
            }
        }
        close(c);
    }
}
