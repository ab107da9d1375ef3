/* The VM level (version 2, SWIFTLET_1.1) as a C client uses it, built against the current header:
 * a unikernel's run from create to exit status with its console read through the descriptor,
 * stop and destroy of running VMs, and every misuse getting its status and message (never a trap).
 *   vm_level GUESTS_DIR   (exit.hvt and idle.hvt from guests/hvt/build.sh)
 * Exits 0 when every check held. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include "testvm.h"

static const char *guests;

/* A config for the unikernel NAME with boot arguments ARGS. */
static int config(char *out, size_t size, const char *name, const char *args) {
    return snprintf(out, size, "{\"boot-source\": {\"kernel_image_path\": \"%s/%s\", \"boot_args\": \"%s\"},"
                               " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 16}}", guests, name, args);
}

static int create(const char *json, swiftlet_vm_t *vm) { return swiftlet_vm_create(json, strlen(json), vm); }

/* Everything the console says until it closes or `ms` pass. */
static size_t read_console(int fd, char *buffer, size_t size, int ms) {
    size_t got = 0;
    while (got + 1 < size) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0) break;
        ssize_t n = read(fd, buffer + got, size - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buffer[got] = '\0';
    return got;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: vm_level GUESTS_DIR\n"); return 2; }
    guests = argv[1];
    char json[1024], text[4096];
    swiftlet_vm_t vm = 0;
    int status = -1, fd = -1;
    uint32_t state = 99;

    EXPECT(create("{}", &vm) == SWIFTLET_E_NOT_OPEN, "create before open");
    MUST(swiftlet_open(SWIFTLET_ABI_VERSION));
    EXPECT(swiftlet_abi_version() >= 2, "a library with the VM level says version 2");

    /* A run from start to end: the guest's status and console, the states on the way. */
    config(json, sizeof json, "exit.hvt", "7");
    MUST(create(json, &vm));
    MUST(swiftlet_vm_state(vm, &state));
    EXPECT(state == SWIFTLET_VM_CREATED, "created, not %u", state);
    EXPECT(swiftlet_vm_wait(vm, 0, &status) == SWIFTLET_E_STATE, "wait before start");
    MUST(swiftlet_vm_console(vm, &fd));
    EXPECT(fcntl(fd, F_GETFD) & FD_CLOEXEC, "the console descriptor is close-on-exec");
    int again = -1;
    EXPECT(swiftlet_vm_console(vm, &again) == SWIFTLET_E_STATE, "the console is handed out once");
    MUST(swiftlet_vm_start(vm));
    EXPECT(swiftlet_vm_start(vm) == SWIFTLET_E_STATE, "a second start");
    EXPECT(swiftlet_vm_console(vm, &again) == SWIFTLET_E_STATE, "console after start");
    MUST(swiftlet_vm_wait(vm, 30000, &status));
    EXPECT(status == 7, "exit status 7, not %d", status);
    MUST(swiftlet_vm_state(vm, &state));
    EXPECT(state == SWIFTLET_VM_STOPPED, "stopped after the guest's exit, not %u", state);
    read_console(fd, text, sizeof text, 1000);
    EXPECT(strstr(text, "exiting with status 7") != NULL, "console: [%s]", text);
    EXPECT(swiftlet_vm_pause(vm) == SWIFTLET_E_STATE, "pause after the end");
    MUST(swiftlet_vm_stop(vm)); /* no effect on an ended VM */
    MUST(swiftlet_vm_destroy(vm));
    close(fd);
    EXPECT(swiftlet_vm_state(vm, &state) == SWIFTLET_E_HANDLE, "a destroyed VM's handle");
    EXPECT(swiftlet_vm_destroy(vm) == SWIFTLET_E_HANDLE, "destroyed twice");

    /* A guest that runs until stopped: pause, resume, a wait that times out, stop: 143. */
    config(json, sizeof json, "idle.hvt", "");
    MUST(create(json, &vm));
    MUST(swiftlet_vm_console(vm, &fd));
    MUST(swiftlet_vm_start(vm));
    read_console(fd, text, sizeof text, 2000);
    EXPECT(strstr(text, "idle: ready") != NULL, "idle's console: [%s]", text);
    MUST(swiftlet_vm_pause(vm));
    MUST(swiftlet_vm_state(vm, &state));
    EXPECT(state == SWIFTLET_VM_PAUSED, "paused, not %u", state);
    MUST(swiftlet_vm_resume(vm));
    MUST(swiftlet_vm_state(vm, &state));
    EXPECT(state == SWIFTLET_VM_RUNNING, "running again, not %u", state);
    EXPECT(swiftlet_vm_wait(vm, 100, &status) == SWIFTLET_E_TIMEOUT, "a wait that times out");
    MUST(swiftlet_vm_stop(vm));
    MUST(swiftlet_vm_wait(vm, 30000, &status));
    EXPECT(status == 143, "a stopped VM's status is 143, not %d", status);
    MUST(swiftlet_vm_destroy(vm));
    close(fd);

    /* Destroying a running VM stops it; without swiftlet_vm_console the output goes to stdout. */
    MUST(create(json, &vm));
    MUST(swiftlet_vm_start(vm));
    MUST(swiftlet_vm_destroy(vm));

    /* Bad configs: a status, a one-line message naming the problem. */
    EXPECT(create("{", &vm) == SWIFTLET_E_CONFIG && strstr(last_message(), "invalid JSON"), "truncated JSON");
    EXPECT(create("{\"boot-source\": {}}", &vm) == SWIFTLET_E_CONFIG && strstr(last_message(), "kernel_image_path"), "no kernel");
    EXPECT(create("{\"boot-source\": {\"kernel_image_path\": \"/nonexistent\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 16}}", &vm)
           == SWIFTLET_E_CONFIG && strstr(last_message(), "/nonexistent"), "a missing kernel file");
    EXPECT(create("{\"boot-source\": {\"kernel_image_path\": \"/dev/zero\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 16}}", &vm)
           == SWIFTLET_E_CONFIG && strstr(last_message(), "/dev/zero"), "/dev/zero as the kernel");
    snprintf(json, sizeof json, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 16}}", guests);
    EXPECT(create(json, &vm) == SWIFTLET_E_CONFIG, "a directory as the kernel");
    config(json, sizeof json, "exit.hvt", "");
    EXPECT(strchr(last_message(), '\n') == NULL, "messages are one line");
    EXPECT(swiftlet_vm_create(json, 0, &vm) == SWIFTLET_E_INVALID, "length 0");
    EXPECT(swiftlet_vm_create(NULL, 10, &vm) == SWIFTLET_E_INVALID, "NULL config");
    EXPECT(swiftlet_vm_create(json, strlen(json), NULL) == SWIFTLET_E_INVALID, "NULL out");
    EXPECT(swiftlet_vm_create(json, 8, &vm) == SWIFTLET_E_CONFIG, "a length that cuts the JSON");

    /* Handles: 0, another kind's, never issued. */
    swiftlet_machine_t machine = 0;
    MUST(swiftlet_machine_create(0, &machine));
    EXPECT(swiftlet_vm_start(machine) == SWIFTLET_E_HANDLE, "a machine handle as a VM");
    EXPECT(swiftlet_vm_start(0) == SWIFTLET_E_HANDLE, "handle 0");
    EXPECT(swiftlet_vm_stop(0x4B00000001000005ull) == SWIFTLET_E_HANDLE, "a handle never issued");
    MUST(swiftlet_machine_destroy(machine));
    MUST(create(json, &vm));
    EXPECT(swiftlet_vm_state(vm, NULL) == SWIFTLET_E_INVALID, "NULL state");
    EXPECT(swiftlet_vm_wait(vm, 0, NULL) == SWIFTLET_E_INVALID, "NULL status");
    EXPECT(swiftlet_vm_console(vm, NULL) == SWIFTLET_E_INVALID, "NULL fd");
    EXPECT(swiftlet_vm_stop(vm) == SWIFTLET_E_STATE, "stop before start");
    EXPECT(swiftlet_vm_pause(vm) == SWIFTLET_E_STATE, "pause before start");
    MUST(swiftlet_vm_destroy(vm)); /* never started: nothing to stop */

    printf("vm_level: %d failures\n", failures);
    return failures ? 1 : 0;
}
