/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_ktstr's loader: parses the fault flags (see scx_ktstr.bpf.c), loads and attaches
 * the scheduler, prints its counters once a second, and detaches on SIGINT or SIGTERM.
 * Exits 0 after a detach it asked for, 1 when the kernel ejected the scheduler.
 */
#include <bpf/bpf.h>
#include <getopt.h>
#include <libgen.h>
#include <scx/common.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scx_ktstr.bpf.skel.h"

static const char help_fmt[] =
	"scx_ktstr: ktstr's test scheduler; sound unless told to inject a fault.\n"
	"\n"
	"Usage: %s [OPTIONS]\n"
	"\n"
	"  --stall-comm COMM       never dispatch tasks named COMM (watchdog: runnable task stall)\n"
	"  --stall-cgroup PATH     never dispatch tasks in the cgroup at PATH (which may be made\n"
	"                          after the start: it is looked for every second)\n"
	"  --error-after SECONDS   call scx_bpf_error() this long after start\n"
	"  --bad-affinity          dispatch pinned user tasks to a CPU they may not use\n"
	"  --starve-cgroup PATH    the cgroup at PATH gets the first pick only 1 in N dispatches\n"
	"                          (looked for every second, like --stall-cgroup)\n"
	"  --starve-ratio N        N for --starve-cgroup (default 4, at least 2)\n"
	"  --fifo                  ignore weights: plain FIFO\n"
	"  --delay-wakeup MS       every wake-up waits MS milliseconds before it may run\n"
	"  --slow-dispatch US      every dispatch busy-waits US microseconds\n"
	"  --fail-verify           load a program the BPF verifier must reject\n"
	"  --timeout-ms MS         the watchdog timeout (default: the kernel's)\n"
	"  -v, --verbose           print libbpf's debug messages\n"
	"  -h, --help              this help\n";

static bool verbose;
static volatile int exit_req;

static int libbpf_print_fn(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, format, args);
}

static void request_exit(int sig)
{
	exit_req = 1;
}

/* A cgroup's id is its directory's inode number on cgroup2; 0 while it does not exist. */
static __u64 cgroup_id(const char *path)
{
	struct stat st;

	if (!path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return 0;
	return st.st_ino;
}

static const char *stall_cgroup, *starve_cgroup;

/* The cgroups named may be made after the scheduler starts: look for them again. */
static void update_cgroups(struct scx_ktstr *skel)
{
	skel->bss->stall_cgid = cgroup_id(stall_cgroup);
	skel->bss->starve_cgid = cgroup_id(starve_cgroup);
}

static unsigned long long number(const char *text, const char *option)
{
	char *end;
	unsigned long long value = strtoull(text, &end, 10);

	if (!*text || *end) {
		fprintf(stderr, "scx_ktstr: %s wants a number, not '%s'\n", option, text);
		exit(2);
	}
	return value;
}

static void print_stats(struct scx_ktstr *skel)
{
	static const char *names[] = {"direct", "queued", "stalled", "starved_picks", "delayed"};
	int nr_cpus = libbpf_num_possible_cpus();
	__u64 values[nr_cpus];
	__u32 idx;

	printf("scx_ktstr:");
	for (idx = 0; idx < 5; idx++) {
		__u64 sum = 0;
		int cpu;

		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &idx, values) == 0)
			for (cpu = 0; cpu < nr_cpus; cpu++)
				sum += values[cpu];
		printf(" %s=%llu", names[idx], (unsigned long long)sum);
	}
	printf("\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"stall-comm", required_argument, NULL, 'C'},
		{"stall-cgroup", required_argument, NULL, 'G'},
		{"error-after", required_argument, NULL, 'E'},
		{"bad-affinity", no_argument, NULL, 'A'},
		{"starve-cgroup", required_argument, NULL, 'S'},
		{"starve-ratio", required_argument, NULL, 'R'},
		{"fifo", no_argument, NULL, 'F'},
		{"delay-wakeup", required_argument, NULL, 'D'},
		{"slow-dispatch", required_argument, NULL, 'W'},
		{"fail-verify", no_argument, NULL, 'X'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	struct scx_ktstr *skel;
	struct bpf_link *link;
	__u64 ecode;
	int opt;

	libbpf_set_print(libbpf_print_fn);
	signal(SIGINT, request_exit);
	signal(SIGTERM, request_exit);
restart:
	optind = 1;
	skel = SCX_OPS_OPEN(ktstr_ops, scx_ktstr);
	while ((opt = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		switch (opt) {
		case 'C':
			strncpy((char *)skel->rodata->stall_comm, optarg,
				sizeof(skel->rodata->stall_comm) - 1);
			break;
		case 'G':
			stall_cgroup = optarg;
			break;
		case 'E':
			skel->rodata->error_after_ns = number(optarg, "--error-after") * 1000000000ULL;
			break;
		case 'A':
			skel->rodata->bad_affinity = true;
			break;
		case 'S':
			starve_cgroup = optarg;
			break;
		case 'R':
			skel->rodata->starve_ratio = number(optarg, "--starve-ratio");
			if (skel->rodata->starve_ratio < 2) {
				fprintf(stderr, "scx_ktstr: --starve-ratio must be at least 2\n");
				return 2;
			}
			break;
		case 'F':
			skel->rodata->fifo = true;
			break;
		case 'D':
			skel->rodata->delay_wakeup_ns = number(optarg, "--delay-wakeup") * 1000000ULL;
			break;
		case 'W':
			skel->rodata->slow_dispatch_ns = number(optarg, "--slow-dispatch") * 1000ULL;
			break;
		case 'X':
			skel->rodata->fail_verify = true;
			break;
		case 'T':
			skel->struct_ops.ktstr_ops->timeout_ms = number(optarg, "--timeout-ms");
			break;
		case 'v':
			verbose = true;
			break;
		default:
			fprintf(stderr, help_fmt, basename(argv[0]));
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "scx_ktstr: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	SCX_OPS_LOAD(skel, ktstr_ops, scx_ktstr, uei);
	update_cgroups(skel);
	link = SCX_OPS_ATTACH(skel, ktstr_ops, scx_ktstr);

	while (!exit_req && !UEI_EXITED(skel, uei)) {
		update_cgroups(skel);
		print_stats(skel);
		sleep(1);
	}

	bpf_link__destroy(link);
	ecode = UEI_REPORT(skel, uei);
	fprintf(stderr, "scx_ktstr: exit kind %d\n", skel->data->uei.kind);
	scx_ktstr__destroy(skel);

	if (!exit_req && UEI_ECODE_RESTART(ecode))
		goto restart;
	return exit_req ? 0 : 1;
}
