#!/usr/bin/env python3
"""Turns examples/bench/run.sh's results.jsonl into a markdown table.

One row per (target, shape): saturated requests/s as median (min-max) over
the repetitions and its ratio to nginx for the same shape; CPU microseconds
per request of the server's processes and its ratio to nginx's; latency at
half of the row's own saturated rate (median over repetitions of
p50/p99/p99.9); peak RSS. Then the p99 sealgate's 5-field rows add over
nginx at the same rate, the sealed body sizes and the sustained run's RSS.
"""
import json
import statistics
import sys
from collections import defaultdict

SHAPES = {
    "post": "POST ~1 KB body",
    "get1k": "GET ~1 KB body",
    "get16k": "GET ~16 KB body",
}
ORDER = ["direct", "nginx", "pass", "seal-1", "seal-5", "seal-20", "open-1", "open-5", "open-20"]


def row_key(r):
    if r[0].startswith("nginx@"):
        return (99, False, 99)
    base = r[0].replace("-cold", "")
    cold = r[0].endswith("-cold")
    return (list(SHAPES).index(r[1]), cold, ORDER.index(base) if base in ORDER else 99)


def label(row):
    names = {
        "direct": "upstream direct",
        "nginx": "**nginx** (peer)",
        "pass": "sealgate pass-through",
    }
    if row in names:
        return names[row]
    verb, n, *cold = row.split("-")
    what = f"sealgate {verb} {n} field{'s' if n != '1' else ''}"
    return what + (", cache off" if cold else "")


def fmt_us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def main(path):
    sat = defaultdict(list)
    lat = defaultdict(list)
    bodies, rss, sustain = [], [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            k = r.get("kind")
            if k == "sat":
                sat[(r["row"], r["shape"])].append(r)
            elif k == "lat":
                lat[(r["row"], r["shape"])].append(r)
            elif k == "body":
                bodies.append(r)
            elif k == "rss":
                rss.append(r)
            elif k == "sustain":
                sustain = r

    def med(xs):
        return statistics.median(xs) if xs else 0

    def lat_of(key):
        ls = lat.get(key, [])
        return ls, [med([x[p] for x in ls]) for p in ("p50_us", "p99_us", "p999_us")]

    nginx = {}
    for (row, shape), rs in sat.items():
        if row == "nginx":
            nginx[shape] = (med([x["rps"] for x in rs]), med([x["cpu_us_per_req"] for x in rs]))

    print(
        "| shape | target | req/s median (min–max) | × nginx | CPU µs/req | CPU × nginx | "
        "p50 / p99 / p99.9 at half its saturation | peak RSS | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(sat, key=row_key):
        row, shape = key
        rs = sat[key]
        rps = [x["rps"] for x in rs]
        cpu = med([x["cpu_us_per_req"] for x in rs])
        ls, (p50, p99, p999) = lat_of(key)
        offered = ls[0]["offered_rps"] if ls else 0
        achieved = med([x["achieved_rps"] for x in ls])
        n_rps, n_cpu = nginx.get(shape, (0, 0))
        ratio = f"{med(rps) / n_rps:.2f}" if n_rps else "–"
        cratio = f"{cpu / n_cpu:.2f}" if n_cpu and row != "direct" else "–"
        errors = sum(x["non2xx"] + x["errors"] for x in rs) + sum(x["errors"] for x in ls)
        short = " (short of rate)" if ls and achieved < 0.97 * offered else ""
        hwm = max(x.get("hwm_kb", 0) for x in rs) / 1024
        print(
            f"| {SHAPES[shape]} | {label(row)} | {med(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) | {ratio} | "
            f"{cpu:.1f} | {cratio} | "
            f"{fmt_us(p50)} / {fmt_us(p99)} / {fmt_us(p999)} @ {offered:,.0f}/s{short} | "
            f"{hwm:.1f} MiB | {errors} |"
        )

    pairs = [(k, v) for k, v in lat.items() if k[0].startswith("nginx@")]
    if pairs:
        print()
        print("p99 added by sealgate over nginx, both at half of sealgate's saturated rate:")
        print()
        print("| shape | sealgate row | rate | sealgate p99 | nginx p99 | added |")
        print("|---|---|---|---|---|---|")
        for (nrow, shape), nls in sorted(pairs, key=lambda kv: list(SHAPES).index(kv[0][1])):
            srow = nrow.split("@", 1)[1]
            ls, (_, sp99, _) = lat_of((srow, shape))
            _, (_, np99, _) = lat_of((nrow, shape))
            print(
                f"| {SHAPES[shape]} | {label(srow)} | {nls[0]['offered_rps']:,.0f}/s | "
                f"{fmt_us(sp99)} | {fmt_us(np99)} | {fmt_us(sp99 - np99)} |"
            )
    loads = [x.get("loadavg", 0) for rs in sat.values() for x in rs]
    if loads:
        print()
        print(f"1-minute load average during the saturation runs: median {med(loads):.2f}, max {max(loads):.2f}")
    if bodies:
        print()
        print("Bodies served for the GET rows (bytes): " + ", ".join(
            f"{b['name']}: {b['plain_bytes']} plain → {b['sealed_bytes']} sealed" for b in bodies))
    if rss:
        print()
        samples = [r["rss_kb"] / 1024 for r in rss]
        print(
            f"Sustained seal-5 run ({rss[-1]['t']} s"
            + (f", {sustain['rps']:,.0f} req/s" if sustain and sustain.get("rps") else "")
            + "): RSS every 5 s (MiB): "
            + " ".join(f"{s:.1f}" for s in samples)
        )
        if len(samples) > 2:
            print(f"RSS growth after the first sample: {samples[-1] - samples[1]:+.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")
