#!/usr/bin/env python3
"""Split `perf script -F comm,ip,sym` samples of the proxy into components.

Each sample goes to the deepest frame (nearest the leaf) that matches one of
the component patterns below, so malloc inside the audit encoder counts as
audit, and the kernel's TCP send under hyper's writev counts as "kernel:
send". Separately, the share of samples whose leaf is the allocator.
Usage: perf script -i perf.data --no-inline -F comm,ip,sym | buckets.py [--callers]
(--callers: the samples are calls of malloc; each goes to its caller's component.)
"""
import re
import sys

# (component, pattern), checked leaf-first on every frame; first frame that
# matches any pattern decides.
COMPONENTS = [
    ("kernel: TCP send (writev, incl. loopback receive softirq)", r"\b(__GI___writev|writev)\b|do_writev"),
    ("kernel: TCP receive (recvfrom)", r"__libc_recv\b|__x64_sys_recvfrom|recvfrom"),
    ("kernel: epoll_wait / scheduler", r"epoll_wait|schedule\b|__x64_sys_epoll"),
    ("kernel: futex (wake the audit writer / park)", r"futex|syscall$"),
    ("audit writer: SQLite + fsync", r"sqlite3|fsync|fdatasync|rusqlite|SqliteStore"),
    ("audit writer: hashing, checkpoint, rest", r"airlock_audit::log::Writer|airlock_audit::checkpoint|airlock_audit::merkle|sha256|SHA256"),
    ("audit on worker: canonical encode", r"airlock_audit::canonical"),
    ("audit on worker: sink enqueue", r"LogSink|airlock_audit::shared"),
    ("audit on worker: event build (record_decision)", r"record_decision|Inner::event\b|AuditEvent"),
    ("policy decision", r"glue::decide|EgressPolicy::decide|airlock_policy::policy"),
    ("URL parse + normalize (policy)", r"parse_url|airlock_policy::host|airlock_policy::path|idna"),
    ("request id, resource strings", r"Inner::request_id|server::resource|authority_string|core::fmt"),
    ("header rewrite (hop-by-hop, Host)", r"strip_hop_by_hop|connection_listed|upgrade_protocol|is_upgrade"),
    ("hooks", r"request_hooks|response_hooks|airlock_hook"),
    ("upstream pool", r"airlock_proxy::pool"),
    ("HTTP/1.1 parse (httparse)", r"httparse|role::(Client|Server) as hyper::proto::h1::Http1Transaction>::parse"),
    ("HTTP/1.1 encode", r"Http1Transaction>::encode|write_head"),
    ("allocator", r"^(malloc|_int_malloc|cfree|free|_int_free|realloc|_int_realloc|malloc_consolidate)"),
]
# Samples no component above claims go to the task they ran in.
TASKS = [
    ("upstream connection task (hyper client)", r"forward::handshake::\{\{closure"),
    ("client connection task (hyper server, forward glue)", r"Proxy::serve|serve_io|Inner::connection|airlock_proxy::server"),
    ("tokio runtime (scheduler, timers, I/O driver)", r"tokio::"),
]
TASK = [(n, re.compile(p)) for n, p in TASKS]
COMP = [(n, re.compile(p)) for n, p in COMPONENTS]
ALLOC = re.compile(r"^(malloc|_int_malloc|cfree|free|_int_free|realloc|_int_realloc|calloc|malloc_consolidate|__libc_malloc|__libc_free|unlink_chunk|tcache)")


# --callers: samples are allocator calls (a uprobe); judge their callers.
CALLERS = "--callers" in sys.argv
WRAP = re.compile(r"^(__GI___libc_malloc|__libc_malloc|__rust_alloc|__rdl_alloc|alloc::|<alloc::|bytes::|<bytes::|core::ptr::drop)")


def main():
    counts, alloc, total, threads = {}, 0, 0, {}
    frames, comm = [], None

    def flush():
        nonlocal alloc, total
        if comm is None:
            return
        total += 1
        threads[comm] = threads.get(comm, 0) + 1
        syms = [f[1] for f in frames]
        if CALLERS:
            while syms and (ALLOC.match(syms[0]) or WRAP.match(syms[0])):
                syms.pop(0)
        name = "other"
        for s in syms:
            hit = next((n for n, r in COMP if r.search(s)), None)
            if hit:
                name = hit
                break
        if name == "other":
            name = next((n for n, r in TASK if any(r.search(x) for x in syms)), "other")
        elif name.startswith("kernel: TCP"):
            side = next((n for n, r in TASK[:2] if any(r.search(x) for x in syms)), "")
            name += " — " + ("upstream side" if side.startswith("upstream") else "client side" if side else "?")
        if comm.startswith("airlock-audit") and not name.startswith("audit writer"):
            name = "audit writer: hashing, checkpoint, rest"
        counts[name] = counts.get(name, 0) + 1
        if syms and ALLOC.match(syms[0]):
            alloc += 1

    for line in sys.stdin:
        if not line.strip():
            continue
        if not line[0].isspace():
            flush()
            comm, frames = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            frames.append((parts[0], parts[1] if len(parts) > 1 else "?"))
    flush()
    if not total:
        print("no samples")
        return
    print(f"samples: {total}")
    for t, c in sorted(threads.items(), key=lambda x: -x[1]):
        print(f"  thread {t:<20} {100 * c / total:5.1f} %")
    for n, c in sorted(counts.items(), key=lambda x: -x[1]):
        print(f"  {100 * c / total:5.1f} %  {n}")
    print(f"  (allocator leaf, any component: {100 * alloc / total:.1f} %)")


main()
