/*
 * A statically linked workload (built by the test with `gcc -static -O1`): fills heap, stack,
 * .data, .bss, thread-local storage and an anonymous mapping (part of it made read-only) with a
 * pattern, prints READY, waits for SIGUSR1 in sigsuspend, verifies everything (and its pid) and
 * prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HEAP_SIZE (32u << 20)
#define MAP_SIZE (4u << 20)
#define STACK_SIZE (64u << 10)

static uint64_t data_words[512] = {1, 2, 3};
static uint64_t bss_words[65536];
static __thread uint64_t tls_words[64];
static volatile sig_atomic_t woke;
static char failures[4096];

static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;
	return ((x << 23) | (x >> 41)) ^ seed;
}

static void fill(uint64_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = word(seed, i);
}

static void check(const char *what, const uint64_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != word(seed, i)) {
			size_t len = strlen(failures);
			snprintf(failures + len, sizeof(failures) - len, "%s%s differs at word %zu",
				 len ? "; " : "", what, i);
			return;
		}
	}
}

static void on_usr1(int sig)
{
	(void)sig;
	woke = 1;
}

int main(void)
{
	uint64_t stack_words[STACK_SIZE / 8];
	sigset_t block, wait_mask;
	struct sigaction sa;
	long pid = syscall(SYS_getpid);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGUSR1);

	uint64_t *heap = malloc(HEAP_SIZE);
	uint64_t *map = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!heap || map == MAP_FAILED) {
		printf("FAIL: setup: allocation failed\n");
		return 2;
	}
	fill(heap, HEAP_SIZE / 8, 1);
	fill(map, MAP_SIZE / 8, 2);
	mprotect(map, MAP_SIZE / 2, PROT_READ);
	fill(stack_words, STACK_SIZE / 8, 3);
	fill(data_words, 512, 4);
	fill(bss_words, 65536, 5);
	fill(tls_words, 64, 6);

	printf("READY\n");
	fflush(stdout);
	while (!woke)
		sigsuspend(&wait_mask);

	check("heap", heap, HEAP_SIZE / 8, 1);
	check("mapping", map, MAP_SIZE / 8, 2);
	check("stack", stack_words, STACK_SIZE / 8, 3);
	check(".data", data_words, 512, 4);
	check(".bss", bss_words, 65536, 5);
	check("tls", tls_words, 64, 6);
	if (syscall(SYS_getpid) != pid) {
		size_t len = strlen(failures);
		snprintf(failures + len, sizeof(failures) - len, "%sgetpid() changed from %ld", len ? "; " : "", pid);
	}
	if (failures[0]) {
		printf("FAIL: %s\n", failures);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
