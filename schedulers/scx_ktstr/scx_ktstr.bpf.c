/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_ktstr: ktstr's own test scheduler.
 *
 * By default a sound, simple scheduler: one global queue ordered by weighted virtual time
 * (nice levels count; cgroup weights do not), tasks dispatched only where their affinity
 * allows, a task that wakes onto an idle CPU goes straight there. Each fault flag breaks
 * exactly one thing, so that the harness can show that each of its verdicts and checks
 * fires on a real fault (and stays quiet without it):
 *
 *   stall_comm / stall_cgid   tasks with that comm, or in that cgroup, are queued but never
 *                             dispatched. The kernel's watchdog ejects the scheduler:
 *                             "runnable task stall" (SCX_EXIT_ERROR_STALL) after about 1.5
 *                             times the timeout.
 *   error_after_ns            scx_bpf_error() that long after the scheduler started
 *                             (SCX_EXIT_ERROR_BPF), from ops.tick().
 *   bad_affinity              a user task whose affinity excludes some CPU is dispatched to
 *                             the first such CPU: the kernel refuses it and ejects the
 *                             scheduler (SCX_EXIT_ERROR, a runtime error).
 *   starve_cgid, starve_ratio tasks in that cgroup get the first pick only once in
 *                             starve_ratio dispatches; with nothing else to run they still
 *                             run, so they are starved of CPU, never stalled.
 *   fifo                      plain FIFO: every task gets the same share, whatever its nice.
 *   delay_wakeup_ns           every wake-up waits that long before the task may run.
 *   slow_dispatch_ns          every ops.dispatch() busy-waits that long.
 *   fail_verify               adds a program path the BPF verifier must reject (an access
 *                             through a plain number), so loading fails.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

/* A comm, NUL-padded, as two words (so that it is read at fixed offsets). */
const volatile u64 stall_comm[2];
/* Cgroup ids, set by the loader when the cgroup exists (it may appear after the start). */
u64 stall_cgid;
const volatile u64 error_after_ns;
const volatile bool bad_affinity;
u64 starve_cgid;
const volatile u32 starve_ratio = 4;
const volatile bool fifo;
const volatile u64 delay_wakeup_ns;
const volatile u64 slow_dispatch_ns;
const volatile bool fail_verify;

#define SHARED_DSQ 0
#define JAIL_DSQ 1   /* stalled tasks: never consumed */
#define STARVE_DSQ 2 /* the starved cgroup's tasks */
#define DELAY_DSQ 3  /* woken tasks, by the time they may run */

UEI_DEFINE(uei);

static u64 vtime_now;
static u64 started_at;
static u64 dispatches;

/* [0] direct to an idle CPU, [1] queued, [2] stalled, [3] starved picks, [4] delayed */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u64));
	__uint(max_entries, 5);
} stats SEC(".maps");

struct delay_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct delay_timer);
} delay_timer SEC(".maps");

static void stat_inc(u32 idx)
{
	u64 *cnt = bpf_map_lookup_elem(&stats, &idx);

	if (cnt)
		(*cnt)++;
}

static bool in_cgroup(struct task_struct *p, u64 cgid)
{
	struct cgroup *cgrp;
	bool match;

	if (!cgid)
		return false;
	cgrp = scx_bpf_task_cgroup(p);
	if (!cgrp)
		return false;
	match = cgrp->kn->id == cgid;
	bpf_cgroup_release(cgrp);
	return match;
}

static bool stalled(struct task_struct *p)
{
	u64 comm[2];

	if (in_cgroup(p, stall_cgid))
		return true;
	if (!stall_comm[0])
		return false;
	/* The kernel NUL-pads comm to 16 bytes too: compare them whole. */
	__builtin_memcpy(comm, p->comm, sizeof(comm));
	return comm[0] == stall_comm[0] && comm[1] == stall_comm[1];
}

/* Whether this task must go through a queue that a fault applies to. */
static bool faulted(struct task_struct *p)
{
	return delay_wakeup_ns || bad_affinity || stalled(p) || in_cgroup(p, starve_cgid);
}

s32 BPF_STRUCT_OPS(ktstr_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle && !faulted(p)) {
		stat_inc(0);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	}
	return cpu;
}

/* The first CPU outside the task's affinity, or -1. */
static s32 forbidden_cpu(struct task_struct *p)
{
	u32 nr = scx_bpf_nr_cpu_ids();
	s32 cpu;

	bpf_for(cpu, 0, nr) {
		if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			return cpu;
	}
	return -1;
}

void BPF_STRUCT_OPS(ktstr_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 vtime = p->scx.dsq_vtime;

	if (fail_verify) {
		/* An access through a number: the verifier refuses the whole program. */
		volatile u64 *bad = (volatile u64 *)(unsigned long)(enq_flags | 1);
		*bad = 0;
	}
	if (stalled(p)) {
		stat_inc(2);
		scx_bpf_dsq_insert(p, JAIL_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	if (bad_affinity && !(p->flags & PF_KTHREAD)) {
		s32 cpu = forbidden_cpu(p);

		if (cpu >= 0) {
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, SCX_SLICE_DFL, enq_flags);
			return;
		}
	}
	if (delay_wakeup_ns) {
		u64 ready = bpf_ktime_get_ns();

		if (enq_flags & SCX_ENQ_WAKEUP) {
			ready += delay_wakeup_ns;
			stat_inc(4);
		}
		scx_bpf_dsq_insert_vtime(p, DELAY_DSQ, SCX_SLICE_DFL, ready, enq_flags);
		return;
	}
	stat_inc(1);
	if (in_cgroup(p, starve_cgid)) {
		scx_bpf_dsq_insert(p, STARVE_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	if (fifo) {
		scx_bpf_dsq_insert(p, SHARED_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	/*
	 * A task that slept comes back with at most one slice of credit. Only on a wake-up:
	 * clamping a task that stayed runnable too (as scx_simple does) lets a light task's
	 * large vtime steps pull the heavy one up, and weights stop counting.
	 */
	if ((enq_flags & SCX_ENQ_WAKEUP) && time_before(vtime, vtime_now - SCX_SLICE_DFL))
		vtime = vtime_now - SCX_SLICE_DFL;
	scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, SCX_SLICE_DFL, vtime, enq_flags);
}

/*
 * Moves the delayed tasks whose time has come to a CPU their affinity allows: this one
 * when called from ops.dispatch() on it, otherwise any (kicked awake).
 */
static void release_delayed(s32 this_cpu)
{
	struct task_struct *p;
	u64 now = bpf_ktime_get_ns();

	bpf_for_each(scx_dsq, p, DELAY_DSQ, 0) {
		s32 cpu;

		if (p->scx.dsq_vtime > now)
			break;
		if (this_cpu >= 0) {
			if (!bpf_cpumask_test_cpu(this_cpu, p->cpus_ptr))
				continue;
			scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL, 0);
			return;
		}
		cpu = scx_bpf_pick_any_cpu(p->cpus_ptr, 0);
		if (cpu < 0)
			continue;
		if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL_ON | cpu, 0))
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
	}
}

static int delay_timerfn(void *map, int *key, struct bpf_timer *timer)
{
	release_delayed(-1);
	bpf_timer_start(timer, delay_wakeup_ns / 8 > 1000000 ? delay_wakeup_ns / 8 : 1000000, 0);
	return 0;
}

void BPF_STRUCT_OPS(ktstr_dispatch, s32 cpu, struct task_struct *prev)
{
	if (slow_dispatch_ns) {
		u64 until = bpf_ktime_get_ns() + slow_dispatch_ns;
		int i;

		bpf_for(i, 0, 1 << 20) {
			if (bpf_ktime_get_ns() >= until)
				break;
		}
	}
	if (delay_wakeup_ns) {
		release_delayed(cpu);
		return;
	}
	if (starve_cgid && __sync_fetch_and_add(&dispatches, 1) % starve_ratio == 0) {
		if (scx_bpf_dsq_move_to_local(STARVE_DSQ, 0)) {
			stat_inc(3);
			return;
		}
	}
	if (scx_bpf_dsq_move_to_local(SHARED_DSQ, 0))
		return;
	scx_bpf_dsq_move_to_local(STARVE_DSQ, 0); /* nothing else wants the CPU */
}

void BPF_STRUCT_OPS(ktstr_tick, struct task_struct *p)
{
	if (error_after_ns && bpf_ktime_get_ns() - started_at >= error_after_ns)
		scx_bpf_error("scx_ktstr: injected error %llu ms after start",
			      error_after_ns / 1000000);
}

void BPF_STRUCT_OPS(ktstr_running, struct task_struct *p)
{
	if (!fifo && time_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
}

void BPF_STRUCT_OPS(ktstr_stopping, struct task_struct *p, bool runnable)
{
	if (fifo)
		return;
	/* Charge the time used, scaled by the inverse of the task's weight. */
	scx_bpf_task_set_dsq_vtime(p, p->scx.dsq_vtime +
				   scale_by_task_weight_inverse(p, SCX_SLICE_DFL - p->scx.slice));
}

void BPF_STRUCT_OPS(ktstr_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, vtime_now);
}

s32 BPF_STRUCT_OPS_SLEEPABLE(ktstr_init)
{
	u32 key = 0;
	struct bpf_timer *timer;
	s32 dsq, ret;

	started_at = bpf_ktime_get_ns();
	bpf_for(dsq, SHARED_DSQ, DELAY_DSQ + 1) {
		ret = scx_bpf_create_dsq(dsq, -1);
		if (ret) {
			scx_bpf_error("failed to create DSQ %d (%d)", dsq, ret);
			return ret;
		}
	}
	if (!delay_wakeup_ns)
		return 0;
	timer = bpf_map_lookup_elem(&delay_timer, &key);
	if (!timer)
		return -ESRCH;
	bpf_timer_init(timer, &delay_timer, CLOCK_MONOTONIC);
	bpf_timer_set_callback(timer, delay_timerfn);
	return bpf_timer_start(timer, 1000000, 0);
}

void BPF_STRUCT_OPS(ktstr_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(ktstr_ops,
	       .select_cpu		= (void *)ktstr_select_cpu,
	       .enqueue			= (void *)ktstr_enqueue,
	       .dispatch		= (void *)ktstr_dispatch,
	       .tick			= (void *)ktstr_tick,
	       .running			= (void *)ktstr_running,
	       .stopping		= (void *)ktstr_stopping,
	       .enable			= (void *)ktstr_enable,
	       .init			= (void *)ktstr_init,
	       .exit			= (void *)ktstr_exit,
	       /* The last task of a CPU goes through ops.enqueue() too, or a lone stalled
		* spinner would just keep its CPU. */
	       .flags			= SCX_OPS_ENQ_LAST,
	       .name			= "ktstr");
