/* A parent waiting in vfork() for its child: the child prints READY and waits for SIGUSR1, then
 * exits 7; the parent, which cannot run meanwhile, checks the child's status and prints PASS.
 * A dump of the parent must be refused by name (it cannot be frozen until the child lets it go),
 * not hang. Compiled by the test (gcc -static). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t woken;
static void on_wake(int s) { (void)s; woken = 1; }

int main(void) {
    signal(SIGUSR1, on_wake);
    pid_t child = vfork();
    if (child == 0) {
        static const char ready[] = "READY\n";
        write(1, ready, sizeof ready - 1);
        while (!woken)
            pause();
        _exit(7);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 7) {
        printf("FAIL: the vfork child ended with status %#x\n", status);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
