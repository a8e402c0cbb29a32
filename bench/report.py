#!/usr/bin/env python3
"""Turns bench/run's results.jsonl and meta.json into the Markdown section for RESULTS.md.

Usage: bench/report.py RESULTS.jsonl META.json
"""

import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = json.load(open(sys.argv[2]))
DPS = meta["dps"]
MiB = 1 << 20


def sel(s, tool=None):
    return [r for r in rows if r["s"] == s and (tool is None or r["tool"] == tool)]


def mmm(vals, fmt="{:.2f}"):
    """median, min, max formatted."""
    return fmt.format(statistics.median(vals)), fmt.format(min(vals)), fmt.format(max(vals))


def med(vals):
    return statistics.median(vals)


def per_dp(r):
    b = r["app_bytes"]
    return sum(b) / len(b)


def num(n):
    return f"{n:,.0f}"


def verdict(ok, text):
    return f"**met** ({text})" if ok else f"**missed** ({text})"


out = []
w = out.append
w(f"## Side-by-side with rsync, casync and nginx (issue 8) — {meta['date']}")
w("")
w(f"**Machine**: {meta['cores']} vCPU {meta['cpu']}, {meta['mem_gib']} GiB RAM, {meta['fs']} on a "
  f"virtio disk, Linux {meta['kernel']}, {meta['os']}; {meta['rustc']}, release build. Peers from "
  f"Debian's packages: {meta['rsync']}; casync {meta['casync']}; {meta['nginx']}; {meta['wrk']}.")
w("")
w(f"**Command**: `{meta['command']}` on pkgdist {meta['code']} ({meta['reps']} repetitions; odd ones run pkgdist first, "
  f"even ones its peers first; everything on loopback, sources in the page cache).")
w("")
w(f"**Data** (`pkgdist-gen`, seeds 1 and 2): `image/os.img`, {num(meta['image_bytes'])} bytes "
  f"(OS-image-like: half random, a quarter text, zeros, repeats), and `tree/`, {num(meta['files'])} "
  f"small files of mixed sizes, {num(meta['tree_bytes'])} bytes. Edit set for the refresh "
  f"(`bench/edit.py --seed 8`): {meta['edit']}.")
w("")

# 1. ingest
w("### 1. Ingest: `pkgdist content snapshot` vs `casync make`")
w("")
w("Both with FastCDC-style chunking at 16/64/256 KiB and zstd; a fresh library or store each run. "
  "pkgdist's time includes making its data durable (it syncs); `casync make` does not sync, so "
  "it is shown alone and with the `sync` that follows it.")
w("")
w("| data | tool | runs | median s | min s | max s | MB/s (median) | peak RSS MiB (max) | stored MB |")
w("|---|---|---|---|---|---|---|---|---|")
ingest = {}
for s, label in (("ingest_image", "image"), ("ingest_tree", "tree")):
    for tool in ("pkgdist", "casync"):
        rs = sel(s, tool)
        if not rs:
            continue
        variants = [(tool, [r["secs"] for r in rs])]
        if tool == "casync":
            variants.append(("casync + sync", [r["secs"] + r["sync_secs"] for r in rs]))
        for name, secs in variants:
            mb = rs[0]["bytes"] / 1e6 / med(secs)
            ingest[(label, name)] = mb
            m, lo, hi = mmm(secs)
            w(f"| {label} | {name} | {len(rs)} | {m} | {lo} | {hi} | {mb:.0f} | "
              f"{max(r['rss_kib'] for r in rs) / 1024:.0f} | {med([r['stored'] for r in rs]) / 1e6:.0f} |")
w("")
for label in ("image", "tree"):
    if (label, "pkgdist") in ingest and (label, "casync") in ingest:
        p = ingest[(label, "pkgdist")]
        w(f"- {label}: pkgdist / casync speed = {p / ingest[(label, 'casync')]:.2f}× "
          f"({p / ingest[(label, 'casync + sync')]:.2f}× against casync + sync).")
w("")


def dist_table(s, title, note):
    w(f"### {title}")
    w("")
    w(note)
    w("")
    w("| tool | runs | median s | min s | max s | of which site-side s | + sync s | bytes per DP (app) | bytes per DP (loopback) | time vs pkgdist | loopback bytes vs pkgdist |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    res = {}
    for tool in ("pkgdist", "rsync", "rsync-z", "casync"):
        rs = sel(s, tool)
        if not rs:
            continue
        secs = [r["secs"] for r in rs]
        res[tool] = dict(secs=med(secs), app=med([per_dp(r) for r in rs]),
                         lo=med([r["lo_bytes"] / DPS for r in rs]))
        m, lo, hi = mmm(secs)
        site = f"{med([r['make_secs'] for r in rs]):.2f}" if "make_secs" in rs[0] else "–"
        if s == "initial" and tool == "pkgdist":
            site = "–"
        sync = f"{med([r['sync_secs'] for r in rs]):.2f}" if "sync_secs" in rs[0] else "(included)"
        ratio_t = ratio_b = "–"
        if tool != "pkgdist" and "pkgdist" in res:
            ratio_t = f"{res['pkgdist']['secs'] / res[tool]['secs']:.2f}×"
            ratio_b = f"{res['pkgdist']['lo'] / res[tool]['lo']:.2f}×"
        w(f"| {tool} | {len(rs)} | {m} | {lo} | {hi} | {site} | {sync} | {num(res[tool]['app'])} | "
          f"{num(res[tool]['lo'])} | {ratio_t} | {ratio_b} |")
    w("")
    return res


BYTES_NOTE = (
    "Bytes: *app* is what each tool counts itself — pkgdist: each DP's `BytesTransferred` (chunk "
    "bytes as sent: as stored, compressed where it paid, or on refresh as deltas against the previous version; no HTTP, manifest or request overhead); rsync: "
    "`--stats` total bytes sent + received by each client; casync: the bytes nginx sent for chunk "
    "requests (`$bytes_sent`, headers included) divided by the number of destinations. "
    "*loopback* is the growth of `lo`'s rx_bytes over the measured interval divided by the number "
    "of destinations: every protocol byte, TCP/IP headers and ACKs included, the same yardstick "
    "for every tool (pkgdist's also includes the benchmark's status polls, one small request per "
    "0.1 s, and the site's and DPs' own traffic). \"time vs pkgdist\" and \"loopback bytes vs "
    "pkgdist\" are pkgdist's median divided by the peer's: below 1 means pkgdist is faster or "
    "sends less.")
dist_table("initial", f"2. Initial distribution to {DPS} destinations", (
    f"pkgdist: `pkgdist up --dps {DPS}`, from `package distribute` to every DP INSTALLED (the site's "
    f"snapshot was taken before, at `package create`: median "
    f"{med([r['secs'] for r in sel('site_snapshot_v1')]):.2f} s). rsync: {DPS} clients at once "
    f"pulling from an rsync daemon on 127.0.0.1 (`rsync -a --delete --stats`; `rsync-z` adds "
    f"`-z --compress-choice=zstd`). casync: {DPS} `casync extract` at once from a chunk store "
    f"nginx serves over HTTP (the store was made before: `casync make` + `sync` median "
    f"{med([r['secs'] for r in sel('casync_make_v1')]):.2f} s). Wall time until every destination "
    f"is complete; pkgdist's DPs sync as they go, the peers do not, so the `sync` that follows "
    f"them is shown apart. " + BYTES_NOTE))
ref = dist_table("refresh", "3. Refresh after the edit set", (
    "pkgdist: from `package refresh` (the site re-snapshots the source: \"site-side\") to every "
    "DP INSTALLED at the new version. rsync: the same clients again into their copies of version "
    "1. casync: `casync make` of the new version into the same store (+ `sync`, \"site-side\"), "
    "then each destination extracts it into its copy of version 1, which casync uses as the "
    "seed (`--seed-output`, its default), fetching only missing chunks over HTTP. The times of "
    "casync include its make."))

# 4. serving
w("### 4. Serving: one DP vs nginx, 8 connections")
w("")
w(f"`wrk -t2 -c8 -d{meta['dur']}s --latency -s bench/serve.lua`: *files* requests random files "
  f"of the tree whole (`/content/<PackageID>/tree/…` on DP 1 of `pkgdist up`, `/files/tree/…` on "
  f"nginx, `sendfile on`, 2 workers, serving the same source folder from the page cache); "
  f"*ranges* requests random 1 MiB ranges (4 KiB aligned) of the image. Same seeded request "
  f"sequence for both. MB/s counts response bytes, headers included; p99 is wrk's latency "
  f"percentile.")
w("")
w("| workload | server | runs | MB/s median | min | max | requests/s (median) | p50 ms (median) | p99 ms median | p99 min | p99 max | MB/s vs nginx |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|")
serve = {}
for wl in ("files", "ranges"):
    for tool in ("pkgdist", "nginx"):
        rs = [r["wrk"] for r in sel(f"serve_{wl}", tool)]
        if not rs:
            continue
        mbs = [r["bytes"] / r["seconds"] / 1e6 for r in rs]
        p99 = [r["p99_us"] / 1000 for r in rs]
        serve[(wl, tool)] = med(mbs)
        ratio = "–"
        if tool == "pkgdist":
            nrs = [r["wrk"] for r in sel(f"serve_{wl}", "nginx")]
            if nrs:
                ratio = f"{med(mbs) / med([r['bytes'] / r['seconds'] / 1e6 for r in nrs]):.2f}×"
        m, lo, hi = mmm(mbs, "{:.0f}")
        pm, pl, ph = mmm(p99)
        w(f"| {wl} | {tool} | {len(rs)} | {m} | {lo} | {hi} | "
          f"{med([r['requests'] / r['seconds'] for r in rs]):,.0f} | "
          f"{med([r['p50_us'] / 1000 for r in rs]):.2f} | {pm} | {pl} | {ph} | {ratio} |")
w("")

# 5. memory
mem = sel("memory")
up = sel("rss_up")
w("### 5. Memory")
w("")
if mem:
    r = mem[0]
    w(f"A site (`pkgdist site run`) and one DP (`pkgdist dp run`) as separate processes; one "
      f"{r['gib']} GiB OS-image-like file (`pkgdist-gen image --seed 5`): `package create` "
      f"(the site snapshots it) took {r['snapshot_secs']:.1f} s, the distribution "
      f"{r['secs']:.1f} s ({num(per_dp(r))} bytes to the DP). Peak RSS from `/usr/bin/time`, "
      f"over each process's whole life.")
    w("")
    w("| process | peak RSS MiB |")
    w("|---|---|")
    w(f"| site | {r['site_rss_kib'] / 1024:.0f} |")
    w(f"| DP | {r['dp_rss_kib'] / 1024:.0f} |")
    if up:
        w(f"| `pkgdist up` (site + {DPS} DPs in one process), scenarios 2–4, max over {len(up)} runs | "
          f"{max(x['rss_kib'] for x in up) / 1024:.0f} |")
    w("")

# goals
w("### Goals")
w("")
if ("image", "pkgdist") in ingest:
    p = ingest[("image", "pkgdist")]
    c = ingest.get(("image", "casync"), float("nan"))
    w(f"- Ingest of new data ≥ 450 MB/s: " + verdict(p >= 450, f"{p:.0f} MB/s on the image, "
      f"{ingest.get(('tree', 'pkgdist'), float('nan')):.0f} MB/s on the tree"
      + ("" if p >= 450 else f"; {100 * (1 - p / 450):.0f}% short")) + ".")
    t = ingest.get(("tree", "pkgdist"), float("nan"))
    tc = ingest.get(("tree", "casync"), float("nan"))
    w(f"- Ingest at least casync's speed: " + verdict(p >= c and t >= tc,
      f"image {p / c:.2f}×, tree {t / tc:.2f}× casync's `make` without sync; "
      f"{p / ingest[('image', 'casync + sync')]:.2f}× and {t / ingest[('tree', 'casync + sync')]:.2f}× with it") + ".")
if "pkgdist" in ref and "rsync" in ref:
    rb = ref["pkgdist"]["lo"] / ref["rsync"]["lo"]
    ra = ref["pkgdist"]["app"] / ref["rsync"]["app"]
    w(f"- Refresh bytes on the wire ≤ 1.1 × rsync's: " + verdict(rb <= 1.1,
      f"{rb:.2f}× on the loopback yardstick, {ra:.2f}× by the tools' own counts"
      + (f"; {ref['pkgdist']['lo'] / ref['rsync-z']['lo']:.2f}× rsync -z's" if "rsync-z" in ref else "")) + ".")
    rt = ref["pkgdist"]["secs"] / ref["rsync"]["secs"]
    w(f"- Refresh wall time ≤ 0.5 × rsync's: " + verdict(rt <= 0.5,
      f"{rt:.2f}× ({ref['pkgdist']['secs']:.2f} s vs {ref['rsync']['secs']:.2f} s)") + ".")
for wl in ("files", "ranges"):
    if (wl, "pkgdist") in serve and (wl, "nginx") in serve:
        x = serve[(wl, "pkgdist")] / serve[(wl, "nginx")]
        w(f"- Serving ≥ 0.8 × nginx's throughput, {wl}: " + verdict(x >= 0.8,
          f"{x:.2f}×, {serve[(wl, 'pkgdist')]:.0f} vs {serve[(wl, 'nginx')]:.0f} MB/s") + ".")
if mem:
    r = mem[0]
    s_, d_ = r["site_rss_kib"] / 1024, r["dp_rss_kib"] / 1024
    w(f"- Peak RSS ≤ 256 MiB for the site and a DP with a {r['gib']} GiB package: "
      + verdict(s_ <= 256 and d_ <= 256, f"site {s_:.0f} MiB, DP {d_:.0f} MiB") + ".")
print("\n".join(out))
