import Foundation
import Testing

/// Linux's virtio-vsock driver against Swiftlet's virtio-vsock and its Firecracker-style
/// Unix-socket backend, on the nested real KVM (see LinuxNestedBootTests). A tiny static C helper
/// (built here with gcc -static) plays both ends: in L1 it talks to the Unix sockets, in L2 it
/// uses AF_VSOCK. L2 gets it through a second cpio appended to make-guest's initrd (the kernel
/// unpacks concatenated archives), as /bin/vsock-helper.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0",
                "needs root (nested KVM via QEMU); SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedVsockTests {
    static let helperSource = #"""
// vsock-helper: test helper for Swiftlet's virtio-vsock (Firecracker-style Unix-socket backend).
//   guest-server PORT          (L2) accept one vsock connection, reply "guest-echo:"+data
//   guest-client PORT MSG      (L2) connect to CID 2 PORT, send MSG, print the reply
//   uds-server PATH            (L1) accept one Unix connection, reply "host-echo:"+data
//   uds-connect PATH PORT MSG  (L1) CONNECT PORT over PATH (retrying), send MSG, print the reply
//   guest-sink PORT            (L2) accept one vsock connection, read to EOF, reply "count=N hash=H"
//   uds-sink PATH              (L1) the same on a Unix socket
//   guest-bulk PORT BYTES      (L2) connect to CID 2 PORT, send BYTES of a pattern, half-close, print the reply
//   uds-bulk PATH PORT BYTES   (L1) the same through CONNECT PORT over PATH (retrying)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int echo(int fd, const char *prefix) {
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0) return 1;
    buf[n] = 0;
    printf("got:%s\n", buf);
    fflush(stdout);
    char out[600];
    int len = snprintf(out, sizeof out, "%s%s", prefix, buf);
    return write(fd, out, len) == len ? 0 : 1;
}

static int reply(int fd, const char *msg) {
    if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) return 1;
    char buf[600];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += n;
    buf[got] = 0;
    printf("reply:%s\n", buf);
    return got ? 0 : 1;
}

static unsigned pattern(size_t i) { return (unsigned char)(i * 7 + 13 + (i >> 12)); }

static int sink(int fd) {
    static unsigned char buf[65536];
    unsigned long long count = 0, hash = 1469598103934665603ull;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++) { hash = (hash ^ buf[i]) * 1099511628211ull; count++; }
    char out[128];
    int len = snprintf(out, sizeof out, "count=%llu hash=%llx", count, hash);
    printf("sink:%s\n", out);
    return write(fd, out, len) == len ? 0 : 1;
}

static int bulk(int fd, size_t bytes) {
    static unsigned char buf[65536];
    unsigned long long hash = 1469598103934665603ull;
    for (size_t done = 0; done < bytes;) {
        size_t chunk = bytes - done < sizeof buf ? bytes - done : sizeof buf;
        for (size_t i = 0; i < chunk; i++) { buf[i] = pattern(done + i); hash = (hash ^ buf[i]) * 1099511628211ull; }
        for (size_t off = 0; off < chunk;) {
            ssize_t n = write(fd, buf + off, chunk - off);
            if (n <= 0) { perror("bulk write"); return 1; }
            off += n;
        }
        done += chunk;
    }
    printf("expect:count=%zu hash=%llx\n", bytes, hash);
    shutdown(fd, SHUT_WR);
    char reply[200];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, reply + got, sizeof reply - 1 - got)) > 0) got += n;
    reply[got] = 0;
    printf("bulk-reply:%s\n", reply);
    return 0;
}

static int unix_connect_port(const char *path, const char *port) {
    for (int attempt = 0; attempt < 240; attempt++, usleep(500000)) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        strncpy(a.sun_path, path, sizeof a.sun_path - 1);
        if (connect(s, (void *)&a, sizeof a)) { close(s); continue; }
        char line[64];
        snprintf(line, sizeof line, "CONNECT %s\n", port);
        if (write(s, line, strlen(line)) < 0) { close(s); continue; }
        char ok[64];
        size_t got = 0;
        while (got < sizeof ok - 1 && read(s, ok + got, 1) == 1 && ok[got] != '\n') got++;
        ok[got] = 0;
        if (strncmp(ok, "OK ", 3)) { close(s); continue; }
        printf("connected:%s\n", ok);
        return s;
    }
    fprintf(stderr, "uds-connect: gave up\n");
    return -1;
}

static int unix_addr(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strncpy(a->sun_path, path, sizeof a->sun_path - 1);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && !strcmp(argv[1], "guest-server")) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = atoi(argv[2]), .svm_cid = VMADDR_CID_ANY};
        if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 1)) { perror("vsock listen"); return 1; }
        printf("listening\n");
        int c = accept(s, NULL, NULL);
        if (c < 0) { perror("accept"); return 1; }
        int r = echo(c, "guest-echo:");
        close(c);
        return r;
    }
    if (argc == 4 && !strcmp(argv[1], "guest-client")) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = atoi(argv[2]), .svm_cid = 2};
        if (s < 0 || connect(s, (void *)&a, sizeof a)) { perror("vsock connect"); return 1; }
        return reply(s, argv[3]);
    }
    if (argc == 3 && !strcmp(argv[1], "uds-server")) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a;
        unix_addr(&a, argv[2]);
        unlink(argv[2]);
        if (bind(s, (void *)&a, sizeof a) || listen(s, 1)) { perror("unix listen"); return 1; }
        int c = accept(s, NULL, NULL);
        int r = echo(c, "host-echo:");
        close(c);
        return r;
    }
    if (argc == 5 && !strcmp(argv[1], "uds-connect")) {
        for (int attempt = 0; attempt < 240; attempt++, usleep(500000)) {
            int s = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un a;
            unix_addr(&a, argv[2]);
            if (connect(s, (void *)&a, sizeof a)) { close(s); continue; }
            char line[64];
            snprintf(line, sizeof line, "CONNECT %s\n", argv[3]);
            write(s, line, strlen(line));
            char ok[64];
            size_t got = 0;
            while (got < sizeof ok - 1 && read(s, ok + got, 1) == 1 && ok[got] != '\n') got++;
            ok[got] = 0;
            if (strncmp(ok, "OK ", 3)) { close(s); continue; }
            printf("connected:%s\n", ok);
            int r = reply(s, argv[4]);
            close(s);
            return r;
        }
        fprintf(stderr, "uds-connect: gave up\n");
        return 1;
    }
    if (argc == 3 && !strcmp(argv[1], "guest-sink")) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = atoi(argv[2]), .svm_cid = VMADDR_CID_ANY};
        if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 1)) { perror("vsock listen"); return 1; }
        int c = accept(s, NULL, NULL);
        int r = c < 0 ? 1 : sink(c);
        close(c);
        return r;
    }
    if (argc == 3 && !strcmp(argv[1], "uds-sink")) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a;
        unix_addr(&a, argv[2]);
        unlink(argv[2]);
        if (bind(s, (void *)&a, sizeof a) || listen(s, 1)) { perror("unix listen"); return 1; }
        int c = accept(s, NULL, NULL);
        int r = c < 0 ? 1 : sink(c);
        close(c);
        return r;
    }
    if (argc == 4 && !strcmp(argv[1], "guest-bulk")) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = atoi(argv[2]), .svm_cid = 2};
        if (s < 0 || connect(s, (void *)&a, sizeof a)) { perror("vsock connect"); return 1; }
        return bulk(s, strtoul(argv[3], NULL, 0));
    }
    if (argc == 5 && !strcmp(argv[1], "uds-bulk")) {
        int s = unix_connect_port(argv[2], argv[3]);
        return s < 0 ? 1 : bulk(s, strtoul(argv[4], NULL, 0));
    }
    fprintf(stderr, "usage: see source\n");
    return 2;
}
"""#

    /// vmlinuz, initrd.img (+ /bin/vsock-helper) and the helper itself, in one share directory.
    static let share: Result<URL, any Error> = {
        do {
            let guest = try LinuxNestedBootTests.guest.get()
            let dir = Harness.scratch.appendingPathComponent("vsock-share")
            let build = Harness.scratch.appendingPathComponent("vsock-build")
            for d in [dir, build] {
                try? FileManager.default.removeItem(at: d)
                try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            }
            try helperSource.write(to: build.appendingPathComponent("vsock-helper.c"), atomically: true, encoding: .utf8)
            let script = """
                set -e
                cd '\(build.path)'
                gcc -static -O2 -o vsock-helper vsock-helper.c
                mkdir -p root/bin && cp vsock-helper root/bin/ && cp vsock-helper '\(dir.path)/'
                cp '\(guest.path)/vmlinuz' '\(dir.path)/'
                cp '\(guest.path)/initrd.img' '\(dir.path)/initrd.img'
                # The appended (uncompressed) archive must start 4-byte aligned; zeros are skipped.
                n=$(stat -c %s '\(dir.path)/initrd.img'); pad=$(( (4 - n % 4) % 4 ))
                head -c $pad /dev/zero >> '\(dir.path)/initrd.img'
                (cd root && printf 'bin\\nbin/vsock-helper\\n' | cpio -o -H newc -R 0:0 2>/dev/null) >> '\(dir.path)/initrd.img'
                """
            let r = Harness.run("/bin/bash", ["-c", script], timeout: 120)
            guard r.status == 0 else { return .failure(HarnessError("vsock helper setup failed: \(r.output)")) }
            return .success(dir)
        } catch { return .failure(error) }
    }()

    func nested(_ command: String) throws -> Harness.Outcome {
        Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                  "--timeout", "400", "--share", try Self.share.get().path,
                                  "--swiftlet", Harness.swiftlet, "--", command], timeout: 520)
    }

    @Test func guestAndHostInitiatedStreams() throws {
        // L1: a Unix server on v.sock_6000 for the guest's connection; swiftlet with
        // --vsock cid=3,uds=/share/v.sock; L2 first connects to CID 2 port 6000, then listens on
        // vsock port 5000 until L1's client gets in with CONNECT 5000 (retrying until it listens).
        let r = try nested("""
            ./vsock-helper uds-server /share/v.sock_6000 > srv.log 2>&1 &
            swiftlet run --kernel vmlinuz --initrd initrd.img --memory 256M --vsock cid=3,uds=/share/v.sock \
              --cmdline 'console=ttyS0 quiet -- /bin/vsock-helper guest-client 6000 hello-from-guest; /bin/vsock-helper guest-server 5000' > vm.log 2>&1 &
            vm=$!
            ./vsock-helper uds-connect /share/v.sock 5000 hello-from-host; echo connect-status=$?
            wait $vm; echo vm-status=$?
            echo "--- vm"; cat vm.log; echo "--- srv"; cat srv.log
            [ -e /share/v.sock ] || echo socket-file-removed
            """)
        #expect(r.output.contains("got:hello-from-guest"), "host server got the guest's bytes: \(r.output)")
        #expect(r.output.contains("reply:host-echo:hello-from-guest"), "guest got the host's reply: \(r.output)")
        #expect(r.output.contains("connected:OK "), "\(r.output)")
        #expect(r.output.contains("got:hello-from-host"), "guest server got the host's bytes: \(r.output)")
        #expect(r.output.contains("reply:guest-echo:hello-from-host"), "\(r.output)")
        #expect(r.output.contains("connect-status=0"), "\(r.output)")
        #expect(r.output.contains("vm-status=0"), "\(r.output)")
        #expect(r.output.contains("socket-file-removed"), "\(r.output)")
    }

    @Test func bulkBothWaysWithHalfClose() throws {
        // 4 MiB each way (far more than either side's credit window): the guest sends to a Unix
        // sink on v.sock_6001 and half-closes; the sink answers with count and FNV-1a hash.
        // Then L1 CONNECTs to a guest sink on port 5001, sends 4 MiB, half-closes, reads the answer.
        let r = try nested("""
            ./vsock-helper uds-sink /share/v.sock_6001 > sink.log 2>&1 &
            swiftlet run --kernel vmlinuz --initrd initrd.img --memory 256M --vsock cid=3,uds=/share/v.sock \\
              --cmdline 'console=ttyS0 quiet -- /bin/vsock-helper guest-bulk 6001 4194304; /bin/vsock-helper guest-sink 5001' > vm.log 2>&1 &
            vm=$!
            ./vsock-helper uds-bulk /share/v.sock 5001 4194304; echo bulk-status=$?
            wait $vm; echo vm-status=$?
            echo "--- vm"; cat vm.log; echo "--- sink"; cat sink.log
            """)
        let expected = "count=4194304 hash=ceccae3103fd0383"
        #expect(r.output.components(separatedBy: "bulk-reply:\(expected)").count - 1 == 2,
                "both directions delivered every byte in order: \(r.output)")
        #expect(r.output.contains("bulk-status=0") && r.output.contains("vm-status=0"), "\(r.output)")
    }
}
