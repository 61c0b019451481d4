/* A stand-in for flanneld and dockerd where their start-up order matters (test_unit_behaviour.py).
 *
 * As flanneld: takes two seconds "to get a lease", writes /run/flannel/subnet.env, records the
 * time in /run/stub/flanneld.ready and sends READY=1 to $NOTIFY_SOCKET from its main process
 * (what flanneld does, and what NotifyAccess=main accepts). As dockerd: records the time in
 * /run/stub/dockerd.started and a copy of /run/flannel/docker (or "missing") in
 * /run/stub/dockerd.saw, then sends READY=1. Both then sleep until stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void stamp(const char *path) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    FILE *f = fopen(path, "w");
    if (!f) exit(1);
    fprintf(f, "%ld.%09ld\n", (long)ts.tv_sec, ts.tv_nsec);
    fclose(f);
}

static void copy(const char *from, const char *to) {
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    char buf[4096];
    size_t n;
    if (!out) exit(1);
    if (!in) {
        fputs("missing\n", out);
    } else {
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
        fclose(in);
    }
    fclose(out);
}

static void notify_ready(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd;
    if (!path || strlen(path) >= sizeof addr.sun_path) exit(2);
    strcpy(addr.sun_path, path);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&addr, sizeof addr) < 0) exit(3);
    close(fd);
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    (void)argc;
    mkdir("/run/stub", 0755);
    if (strcmp(name, "flanneld") == 0) {
        FILE *f;
        sleep(2);
        mkdir("/run/flannel", 0755);
        f = fopen("/run/flannel/subnet.env", "w");
        if (!f) return 1;
        fputs("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.15.1/24\nFLANNEL_MTU=1450\n"
              "FLANNEL_IPMASQ=true\n", f);
        fclose(f);
        stamp("/run/stub/flanneld.ready");
    } else {
        stamp("/run/stub/dockerd.started");
        copy("/run/flannel/docker", "/run/stub/dockerd.saw");
    }
    notify_ready();
    for (;;) pause();
}
