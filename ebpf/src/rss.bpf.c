// SPDX-License-Identifier: Apache-2.0
//
// faasflow's memory probe: peak resident memory per process and per cgroup, kept from the
// kernel's `kmem/rss_stat` tracepoint, which fires whenever a process's resident page counters
// change (on page faults, unmaps, exits). The daemon registers the processes it wants measured
// (its instances) by inserting them into PROCS; events of any other process cost one failed
// lookup. Built by build.rs with `clang -target bpf`; loaded and read with aya.
//
// The helpers and map macros are declared here rather than taken from libbpf's headers, so
// that building needs only clang and the kernel's UAPI headers.

#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) =
    (void *)BPF_FUNC_map_update_elem;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)BPF_FUNC_get_current_pid_tgid;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)BPF_FUNC_get_current_cgroup_id;

// The tracepoint's record, as /sys/kernel/tracing/events/kmem/rss_stat/format gives it.
struct rss_stat_args {
    __u64 common; // common_type, common_flags, common_preempt_count, common_pid
    __u32 mm_id;
    __u32 curr; // 1 when the counters are the current task's own
    __s32 member; // 0 file, 1 anon, 2 swap entries, 3 shmem
    __s32 pad;
    __s64 size; // the member's new value, bytes
};

// Per process: each counter's last value, and the peak of its own pages (file-backed and
// anonymous; not shared memory, which for an instance is mostly the daemon's arena) since the
// daemon last reset it. Layout shared with the Rust side (`ProcRss`).
struct proc_rss {
    __s64 member[4];
    __s64 peak;
    __u64 cgroup;
};

// Per cgroup: the resident bytes (file-backed and anonymous) of its registered processes, and
// their peak.
struct cgroup_rss {
    __s64 current;
    __s64 peak;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct proc_rss);
} PROCS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct cgroup_rss);
} CGROUPS SEC(".maps");

SEC("tracepoint/kmem/rss_stat")
int rss_stat(struct rss_stat_args *ctx)
{
    // Only counters of the task that changed them: another task's (reclaim, exit of a
    // borrowed mm) cannot be attributed through the current pid.
    if (ctx->curr != 1)
        return 0;
    int m = ctx->member;
    if (m < 0 || m > 3 || m == 2)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_rss *p = bpf_map_lookup_elem(&PROCS, &tgid);
    if (!p)
        return 0;
    __s64 delta = m == 3 ? 0 : ctx->size - p->member[m];
    p->member[m] = ctx->size;
    __s64 total = p->member[0] + p->member[1];
    if (total > p->peak)
        p->peak = total;
    __u64 cg = bpf_get_current_cgroup_id();
    struct cgroup_rss *c = bpf_map_lookup_elem(&CGROUPS, &cg);
    if (!c) {
        struct cgroup_rss fresh = {};
        bpf_map_update_elem(&CGROUPS, &cg, &fresh, BPF_NOEXIST);
        c = bpf_map_lookup_elem(&CGROUPS, &cg);
        if (!c)
            return 0;
    }
    __s64 now = __sync_fetch_and_add(&c->current, delta) + delta;
    if (now > c->peak)
        c->peak = now;
    p->cgroup = cg;
    return 0;
}

// It calls no GPL-only helper.
char LICENSE[] SEC("license") = "Apache-2.0";
