"""The printed table (ratios and the issue's targets beside the figures) and the
IPAM measurement through bench_ipam. `targets` and `table` are pure."""

from __future__ import annotations

import re
from typing import Any

from peers.metrics import lines as metrics_lines
from peers.stats import Target, ratio

SYSTEMS = ("cnm", "cnm-cni", "cni", "netavark", "docker", "docker-cnm")
# The kernel floor's rows (bench_osl.py): osl's own join, and a leave's wait.
FLOOR_JOIN = "join (veth in place + addrs + routes + up)"
FLOOR_LEAVE = "leave, delete_link_async (caller's wait)"
# "Flat" RSS from 100 to 1,000 endpoints: within 10 % (allocator noise).
FLAT_RSS = 1.1


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _f(value: Any, fmt: str = "8.1f") -> str:
    width = int(re.match(r"\d*", fmt).group() or 0)
    return format(value, fmt) if isinstance(value, int | float) else "-".rjust(width)


# ------------------------------------------------------------------ targets


def targets(results: dict[str, Any]) -> list[Target]:
    conn = results.get("connect", {})
    cnm_c, cnm_d = _get(conn, "cnm", "connect", "p50"), _get(conn, "cnm", "disconnect", "p50")
    floor = results.get("kernel_floor") or {}
    out = [
        Target("cnm connect p50 / netavark's", ratio(cnm_c, _get(conn, "netavark", "connect", "p50")), 0.2),
        Target("cnm connect p50 / CNI's", ratio(cnm_c, _get(conn, "cni", "connect", "p50")), 0.10),
        Target("cnm connect p50 / kernel floor (bench_osl join)",
               ratio(cnm_c, _get(floor, FLOOR_JOIN, "p50")), 1.5),
        Target("cnm disconnect p50 / netavark's",
               ratio(cnm_d, _get(conn, "netavark", "disconnect", "p50")), 0.2),
        Target("cnm disconnect p50 / kernel floor (bench_osl leave)",
               ratio(cnm_d, _get(floor, FLOOR_LEAVE, "p50")), 1.5),
    ]  # fmt: skip
    par = _get(results, "parallel", "cnm") or {}
    many, one = _get(par, "connect", "per_s"), _get(par, "connect_one_client", "per_s")
    if many is not None and one is not None:
        clients = _get(results, "meta", "clients") or 8
        out.append(
            Target(f"cnm connects/s, {clients} clients / 1 client", ratio(many, one), 2.0, "ge")
        )
    by_k = dict((k, rss) for k, rss in _get(results, "resources", "rss_kib_by_endpoints") or [])
    if len(by_k) >= 2:
        low, high = min(by_k), max(by_k)
        # redis-server holds the records themselves: it grows with them by design.
        for svc in ("cnm-ipam", "cnm-controller", "cnm-driver"):
            if svc in by_k[low] and svc in by_k[high]:
                out.append(Target(f"{svc} RSS at {high} / at {low} endpoints",
                                  ratio(by_k[high][svc], by_k[low][svc]), FLAT_RSS))  # fmt: skip
    flat = _get(results, "flatness", "cnm")
    if flat and len(flat["buckets"]) >= 2:
        first, last = flat["buckets"][0], flat["buckets"][-1]
        out.append(
            Target(f"cnm connect p99 at k={last['first']}..{last['last']} / at k=1..{first['last']}",
                   ratio(last["p99"], first["p99"]), 1.3)
        )  # fmt: skip
        counts = [n for k, n in flat["rules_by_k"] if k > 0]
        if counts:
            out.append(
                Target(
                    "cnm rules at k=K minus at the first bucket", float(counts[-1] - counts[0]), 0
                )
            )
    ipam = results.get("ipam") or {}
    rows = [r for r in ipam.get("rows", []) if r["phase"] in ("empty", "99% full")]
    if rows:
        out.append(Target("IPAM p50 ms, worst of empty/99% full, 1 and 4 clients",
                          max(r["p50_ms"] for r in rows), 1.0))  # fmt: skip
    fill4 = [r for r in ipam.get("rows", []) if r["phase"] == "fill" and r["clients"] == 4]
    if fill4:
        out.append(
            Target("IPAM allocations/s, 4 clients (whole /16)", fill4[0]["per_s"], 3000, "ge")
        )
    return out


# ------------------------------------------------------------------ table


def table(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    lines = [
        "",
        f"cnm vs peers, {meta.get('started', '?')}, {'QUICK' if meta.get('quick') else 'full'} run, "
        f"{meta.get('duration_s', '?')} s; {m.get('cpu', '?')} x{m.get('cpus', '?')}, "
        f"{m.get('mem_gib', '?')} GiB, kernel {m.get('kernel', '?')}, "
        f"load average {_f(_get(m, 'load_avg_at_start') and m['load_avg_at_start'][0], '.1f')} "
        f"at start, {_f(_get(m, 'load_avg_at_end') and m['load_avg_at_end'][0], '.1f')} at end",
    ]
    for name, why in meta.get("skipped", {}).items():
        lines.append(f"SKIPPED {name}: {why}")
    for name, why in meta.get("failed", {}).items():
        lines.append(f"FAILED  {name}: {why}")
    lines += _connect(results) + _flatness(results) + _parallel(results) + _ipam(results)
    lines += _resources(results) + _correctness(results) + _profile(results)
    lines.append("")
    lines.append("Targets (printed, not enforced):")
    for t in targets(results):
        verdict = {True: "met", False: "NOT MET", None: "n/a"}[t.met]
        sign = "<=" if t.sense == "le" else ">="
        lines.append(f"  {t.name:<58} {_f(t.value, '9.2f')}  {sign} {t.limit:<6g} {verdict}")
    return "\n".join(lines)


def _connect(results: dict[str, Any]) -> list[str]:
    conn = results.get("connect")
    if not conn:
        return []
    n = next(iter(conn.values()))["connect"]["n"]
    lines = [
        "",
        f"1-2. Connect / disconnect, {n} containers per system, interleaved (ms; ratio = cnm / system)",
        f"{'system':<9} {'conn p50':>8} {'p95':>8} {'p99':>8} {'disc p50':>8} {'p95':>8} {'p99':>8}"
        f" {'cnm/x conn':>10} {'cnm/x disc':>10} {'rules':>6}",
    ]
    cnm_c, cnm_d = _get(conn, "cnm", "connect", "p50"), _get(conn, "cnm", "disconnect", "p50")
    for name in SYSTEMS:
        r = conn.get(name)
        if not r:
            continue
        c, d = r.get("connect", {}), r.get("disconnect", {})
        lines.append(
            f"{name:<9} {_f(c.get('p50'))} {_f(c.get('p95'))} {_f(c.get('p99'))} "
            f"{_f(d.get('p50'))} {_f(d.get('p95'))} {_f(d.get('p99'))} "
            f"{_f(ratio(cnm_c, c.get('p50')), '10.2f')} {_f(ratio(cnm_d, d.get('p50')), '10.2f')} "
            f"{_f(r.get('rules_connected'), '6d')}"
        )
    return lines


def _flatness(results: dict[str, Any]) -> list[str]:
    flat = results.get("flatness")
    if not flat:
        return []
    names = [n for n in SYSTEMS if n in flat]
    lines = ["", "3. Flatness: connect latency of the k-th container (ms), rules after k"]
    lines.append(
        f"{'k':<11}" + "".join(f" {n + ' p50':>13} {'p99':>7} {'rules':>6}" for n in names)
    )
    rules = {n: dict(flat[n]["rules_by_k"]) for n in names}
    for i, b in enumerate(flat[names[0]]["buckets"]):
        row = f"{b['first']:>4}..{b['last']:<5}"
        for n in names:
            bn = flat[n]["buckets"][i] if i < len(flat[n]["buckets"]) else {}
            row += f" {_f(bn.get('p50'), '13.1f')} {_f(bn.get('p99'), '7.1f')} "
            row += _f(rules[n].get(bn.get("last")), "6d")
        lines.append(row)
    for n in [n for n in names if "disconnect" in flat[n]]:
        d = flat[n]["disconnect"]
        lines.append(f"  {n}: disconnect of all {d.get('n', '?')}: p50 {_f(d.get('p50'), '.1f')} "
                     f"p99 {_f(d.get('p99'), '.1f')} ms")  # fmt: skip
    return lines


def _parallel(results: dict[str, Any]) -> list[str]:
    par = results.get("parallel")
    if not par:
        return []
    clients = results.get("meta", {}).get("clients", "?")
    lines = [
        "",
        f"4. Parallel: {clients} clients at once (ms; ratio = cnm's throughput / system's)",
    ]
    lines.append(
        f"{'system':<9} {'n':>5} {'conn/s':>8} {'p50':>8} {'p99':>8} {'disc/s':>8} {'p99':>8}"
        f" {'cnm/x':>7}"
    )
    cnm = _get(par, "cnm", "connect", "per_s")
    for name in SYSTEMS:
        r = par.get(name)
        if r:
            c, d = r["connect"], r.get("disconnect", {})
            lines.append(
                f"{name:<9} {c['n']:>5} {_f(c['per_s'])} {_f(c['p50'])} {_f(c['p99'])} "
                f"{_f(d.get('per_s'))} {_f(d.get('p99'))} {_f(ratio(cnm, c['per_s']), '7.2f')}"
            )
    one = _get(par, "cnm", "connect_one_client") or {}
    many = _get(par, "cnm", "connect") or {}
    if one.get("per_s") and many.get("per_s"):
        lines.append(
            f"  cnm, same containers: 1 client {one['per_s']:.1f} connects/s, {clients} clients "
            f"{many['per_s']:.1f} ({many['per_s'] / one['per_s']:.2f} x); services' CPU per "
            f"connect {one.get('service_cpu_ms_per_op', 0):.1f} / "
            f"{many.get('service_cpu_ms_per_op', 0):.1f} ms; machine busy "
            f"{one.get('machine_busy', 0):.0%} / {many.get('machine_busy', 0):.0%}"
        )
        per = many.get("cpu_ms_per_op") or {}
        lines.append(
            f"  CPU per connect with {clients} clients (ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        )
    return lines


def _ipam(results: dict[str, Any]) -> list[str]:
    ipam = results.get("ipam")
    if not ipam or not ipam.get("rows"):
        return []
    lines = ["", f"5. IPAM through gRPC (bench_ipam.py), pool /{ipam['prefix']}"]
    lines.append(
        f"{'phase':<12} {'clients':>7} {'allocs':>8} {'allocs/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for r in ipam["rows"]:
        lines.append(
            f"{r['phase']:<12} {r['clients']:>7} {r['allocs']:>8} {_f(r['per_s'], '9.0f')} "
            f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f}"
        )
    return lines


def _resources(results: dict[str, Any]) -> list[str]:
    res = results.get("resources")
    if not res:
        return []
    rss = "  ".join(f"{k} {v / 1024:.0f} MiB" for k, v in res["rss_kib"].items())
    lines = [
        "",
        f"6. Resources after {res['endpoints']} endpoints: RSS {rss}",
        f"   Redis used_memory {res['redis_used_memory'] / 2**20:.1f} MiB "
        f"(rss {res['redis_used_memory_rss'] / 2**20:.1f} MiB), {res['redis_keys']} keys",
    ]
    by_k = res.get("rss_kib_by_endpoints") or []
    for n, rss_kib in by_k:
        each = "  ".join(f"{k} {v / 1024:.1f} MiB" for k, v in rss_kib.items())
        lines.append(f"   RSS at {n:>5} endpoints: {each}")
    for key, label in (
        ("rss_kib_after_disconnect", "after disconnecting all"),
        ("rss_kib_after_cleanup", "after deleting sandboxes and networks"),
    ):
        if res.get(key):
            each = "  ".join(f"{k} {v / 1024:.1f} MiB" for k, v in res[key].items())
            lines.append(f"   RSS {label}: {each}")
    if len(by_k) >= 2:
        (_, first), (_, last) = by_k[0], by_k[-1]
        ratios = "  ".join(f"{k} {last[k] / first[k]:.2f}" for k in last if first.get(k))
        lines.append(
            f"   RSS ratio {by_k[-1][0]} / {by_k[0][0]} endpoints (target: flat): {ratios}"
        )
    return lines


def _correctness(results: dict[str, Any]) -> list[str]:
    lines = ["", "7. Correctness while measuring"]
    for phase, label in (
        ("connect", "all"),
        ("flatness", "every 10th"),
        ("parallel", "every 10th"),
    ):
        for name, r in (results.get(phase) or {}).items():
            gw = r.get("gateway")
            if gw:
                bad = gw["unreachable"]
                line = (f"  {phase:<9} {name:<9} gateway ping ({label}): "
                        f"{gw['pinged'] - len(bad)}/{gw['pinged']} answer")  # fmt: skip
                if r.get("ports"):
                    p = r["ports"]
                    line += (
                        f"; published port reached {p['ok']}/{p['checked']} (first, middle, last)"
                    )
                slow = len(gw.get("missed_first_ping", [])) - len(bad)
                line += f" ({slow} only on the 3 s retry)" if slow else ""
                lines.append(line + (f"; NO ANSWER: {bad[:3]}" if bad else ""))
    for name, left in (results.get("leftovers") or {}).items():
        lines.append(f"  left after the run, {name}: {', '.join(left) if left else 'nothing'}")
    for p in results.get("teardown_problems", []):
        lines.append(f"  teardown: {p}")
    return lines


def _profile(results: dict[str, Any]) -> list[str]:
    prof = results.get("profile")
    if not prof:
        return []
    if "skipped" in prof:
        return ["", f"Profile skipped: {prof['skipped']}"]
    lines = ["", f"Where cnm's time goes (py-spy, {prof['ops']} sequential ops; ms per op)"]
    for op in ("connect", "disconnect"):
        e = prof[op]
        clean = e.get("client_ms_without_py_spy")
        lines.append(
            f"  {op}: client p50 {e['client_ms']['p50']:.1f} ms, mean {e['client_ms']['mean']:.1f} ms"
            + (f" (without py-spy: p50 {clean['p50']:.1f} ms)" if clean else "")
        )
        for proc, d in e["processes"].items():
            if "error" in d:
                lines.append(f"    {proc}: {d['error']}")
                continue
            total = sum(d["handlers_ms"].values())
            lines.append(f"    {proc} handlers {total:.1f} ms: " + ", ".join(
                f"{k} {v:.1f}" for k, v in d["categories_ms"].items()))  # fmt: skip
        if e.get("metrics"):
            lines.append(
                f"    per {op}, from the services' own metrics (--metrics-listen; "
                "a series without py-spy):"
            )
            lines += metrics_lines(e["metrics"])
    if "background_files_writer_ms_per_pair" in prof:
        lines.append(
            "  driver's background hosts/resolv.conf writer (peers' files), busy per "
            f"connect+disconnect: {prof['background_files_writer_ms_per_pair']:.1f} ms"
        )
    floor = results.get("kernel_floor") or {}
    join = floor.get("join (veth in place + addrs + routes + up)")
    leave = floor.get("leave, delete_link_async (caller's wait)")
    if join:
        lines.append(
            f"  kernel floor (bench_osl, osl alone): join p50 {join['p50']:.2f} ms"
            + (f", leave (async delete, caller's wait) p50 {leave['p50']:.2f} ms" if leave else "")
        )
    return lines


# ------------------------------------------------------------------ IPAM


def parse_ipam_line(line: str) -> dict[str, Any]:
    """A row of bench_ipam's table: phase (may hold spaces), clients, allocs, rate|-, p50, p99."""
    *phase, clients, allocs, rate, p50, p99 = line.split()
    return {
        "phase": " ".join(phase),
        "clients": int(clients),
        "allocs": int(allocs),
        "per_s": None if rate == "-" else float(rate),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
    }


def ipam_bench(address: str, prefix: int, clients: tuple[int, ...] = (1, 4)) -> dict[str, Any]:
    """bench_ipam's measurement against the running cnm-ipam (item 5)."""
    import bench_ipam  # bench/ is on sys.path (run_peers.py)
    from peers.phases import say

    rows = []
    for n in clients:
        say(f"IPAM: every address of a /{prefix}, {n} client(s)")
        rows += [parse_ipam_line(line) for line in bench_ipam.bench([address], n, prefix, "bench")]
    return {"prefix": prefix, "rows": rows}
