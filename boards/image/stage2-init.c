/*
 * boards/image/stage2-init.c: PID 1 of the throw-away initramfs that boots the half-built
 * image under qemu-system-aarch64 for the second stage (this machine has no binfmt_misc, so
 * the arm64 maintainer scripts run inside an emulated arm64 guest, not on the host).
 *
 * Debian's arm64 kernel has virtio_blk and ext4 as modules, and the rootfs has no initrd yet
 * (the linux-image postinst makes it in the second stage). This init loads the modules
 * listed in /modules.order (dependencies first; boards/image.sh writes the list from
 * modules.dep), mounts /dev/vda, moves /dev into it, chroots and execs
 * /bin/sh /tenbit-stage2/stage2.sh. Static, no libc features beyond syscalls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "stage2-init: %s: %s\nTENBIT-STAGE2-FAILED\n", what, strerror(errno));
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

int main(void) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0) die("mount /dev");
    if (mount("proc", "/proc", "proc", 0, NULL) != 0) die("mount /proc");
    int c = open("/dev/console", O_RDWR);
    if (c >= 0) { dup2(c, 0); dup2(c, 1); dup2(c, 2); }
    FILE *f = fopen("/modules.order", "r");
    if (!f) die("open /modules.order");
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die(line);
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) die(line);
        close(fd);
    }
    fclose(f);
    struct stat st;
    for (int i = 0; stat("/dev/vda", &st) != 0; i++) {
        if (i > 300) die("no /dev/vda after 30 s");
        usleep(100000);
    }
    mkdir("/root", 0755);
    if (mount("/dev/vda", "/root", "ext4", 0, NULL) != 0) die("mount /dev/vda");
    if (mount("/dev", "/root/dev", NULL, MS_MOVE, NULL) != 0) die("move /dev");
    umount("/proc");
    if (chdir("/root") != 0) die("chdir /root");
    if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("move root");
    if (chroot(".") != 0) die("chroot");
    if (chdir("/") != 0) die("chdir /");
    char *argv[] = {"/bin/sh", "/tenbit-stage2/stage2.sh", NULL};
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8", NULL};
    execve(argv[0], argv, envp);
    die("exec /tenbit-stage2/stage2.sh");
    return 1;
}
