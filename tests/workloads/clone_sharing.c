/* A child made with clone(CLONE_VM | CLONE_FILES | CLONE_FS | CLONE_SIGHAND) on a stack of its own:
 * it shares the parent's address space, fd table, fs info (cwd, umask) and signal handlers, without
 * being a thread. After the wake (SIGUSR1), the child opens a file, changes directory and umask,
 * installs a handler and writes memory; the parent must see all of it (one of each object, not
 * copies), and both keep their pids. Prints PASS or FAIL.
 * Compiled by the test (gcc -static). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t woken, child_go, hits, wrote;
static int newfd = -1;
static char workdir[4096];

static void on_wake(int s) { (void)s; woken = 1; }
static void on_go(int s) { (void)s; child_go = 1; }
static void on_usr2(int s) { (void)s; hits++; }

static int child(void *arg) {
    (void)arg;
    sigset_t none;
    sigemptyset(&none);
    while (!child_go)
        sigsuspend(&none);
    char path[4200];
    snprintf(path, sizeof path, "%s/shared-table.txt", workdir);
    newfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600); /* CLONE_FILES */
    if (chdir("/") != 0)                                  /* CLONE_FS */
        return 2;
    umask(0027);
    signal(SIGUSR2, on_usr2); /* CLONE_SIGHAND */
    wrote = 42;               /* CLONE_VM */
    return 0;
}

int main(void) {
    if (!getcwd(workdir, sizeof workdir))
        return 1;
    signal(SIGUSR1, on_wake);
    signal(SIGHUP, on_go);
    sigset_t block, none;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&none);
    umask(0022);
    char *stack = malloc(1 << 16);
    pid_t c = clone(child, stack + (1 << 16), CLONE_VM | CLONE_FILES | CLONE_FS | CLONE_SIGHAND | SIGCHLD, NULL);
    if (c < 0) {
        printf("FAIL: clone\n");
        return 1;
    }
    pid_t me = syscall(SYS_getpid);
    printf("READY\n");
    fflush(stdout);
    while (!woken)
        sigsuspend(&none);
    kill(c, SIGHUP); /* the child's handler table is ours: on_go runs in the child */
    int st = 0;
    waitpid(c, &st, 0);
    char cwd[64] = "";
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = 0;
    mode_t mask = umask(0);
    raise(SIGUSR2);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && wrote == 42 && newfd >= 0 && fcntl(newfd, F_GETFD) >= 0 &&
             strcmp(cwd, "/") == 0 && mask == 0027 && hits == 1 && syscall(SYS_getpid) == me;
    if (ok)
        printf("PASS\n");
    else
        printf("FAIL: child status %#x, memory %d, fd %d, cwd %s, umask %o, handler hits %d\n", st, (int)wrote, newfd,
               cwd, (unsigned)mask, (int)hits);
    return !ok;
}
