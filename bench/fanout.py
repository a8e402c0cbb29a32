#!/usr/bin/env python3
"""Fan-out through a site hierarchy (issue 6), on loopback with the release binary.

One top site (CAS), 2 child sites, 8 DPs under each. Every link is throttled to the same byte
rate: CAS -> child with `site add --rate-limit`, child -> DP with `dp set --rate-limit`. A
package of incompressible bytes is created at CAS and distributed from CAS to all 16 DPs.

Reports, per repetition: the time from `package distribute` until CAS shows all 16 DPs
INSTALLED, against the ideal of package size / link rate (what one link needs to carry the
package once), and the bytes that left CAS (the children's PKGDIST_SiteContent.BytesReceived)
against the package size.

Usage: bench/fanout.py [REPS] [MIB] [RATE_MB_PER_S]   (defaults 3, 64, 16)
Scratch under $WORK (default bench/work-fanout, git-ignored). Not part of the tests.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 64
RATE = int(float(sys.argv[3]) * 1_000_000) if len(sys.argv) > 3 else 16_000_000
WORK = os.path.abspath(os.environ.get("WORK", os.path.join(ROOT, "bench", "work-fanout")))
TOKEN = "bench-bootstrap-token-0123456789"
CHILDREN = ["PR1", "PR2"]
DPS_PER_CHILD = 8
BIN = os.path.join(ROOT, "target", "release", "pkgdist")
procs = []


def start(args, ready, log):
    if os.path.exists(ready):
        os.remove(ready)
    env = dict(os.environ, PKGDIST_BOOTSTRAP_TOKEN=TOKEN, RUST_LOG="warn")
    p = subprocess.Popen([BIN, *args, "--ready-file", ready], stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"), env=env)
    procs.append(p)
    deadline = time.time() + 30
    while not os.path.exists(ready):
        if p.poll() is not None or time.time() > deadline:
            sys.exit(f"{args[:2]} did not start; see {log}")
        time.sleep(0.05)
    return "http://" + json.load(open(ready))["addr"]


def cli(site, *args):
    out = subprocess.run([BIN, "--site", site, "--token", TOKEN, "--json", *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"pkgdist {args}: {out.stderr}")
    return json.loads(out.stdout) if out.stdout.strip() else None


def wmi(site, path):
    req = urllib.request.Request(f"{site}/AdminService/wmi/{path}",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["value"]


def site_toml(d, code):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "site.toml"), "w") as f:
        f.write(f'site-code = "{code}"\n[distribution]\nmax-threads-per-package = 8\n'
                'retry-delay-secs = 2\npoll-ms = 200\n')


def one_run(rep):
    run = os.path.join(WORK, f"run{rep}")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    site_toml(os.path.join(run, "cas"), "CAS")
    cas = start(["site", "run", "--data", os.path.join(run, "cas"), "--listen", "127.0.0.1:0"],
                os.path.join(run, "cas.ready"), os.path.join(run, "cas.log"))
    children = {}
    for code in CHILDREN:
        token = cli(cas, "site", "add", code, "--rate-limit", str(RATE))["EnrollmentToken"]
        d = os.path.join(run, code)
        site_toml(d, code)
        children[code] = start(["site", "run", "--data", d, "--listen", "127.0.0.1:0",
                                "--parent", cas, "--enrollment-token", token],
                               os.path.join(run, f"{code}.ready"), os.path.join(run, f"{code}.log"))
    names = []
    for code, url in children.items():
        for i in range(DPS_PER_CHILD):
            name = f"dp{i}-{code.lower()}"
            token = cli(url, "dp", "add", "--name", name)["enrollment_token"]
            cli(url, "dp", "set", name, "--rate-limit", str(RATE))
            start(["dp", "run", "--data", os.path.join(run, name), "--site", url,
                   "--enrollment-token", token, "--listen", "127.0.0.1:0"],
                  os.path.join(run, f"{name}.ready"), os.path.join(run, f"{name}.log"))
            names.append(name)
    deadline = time.time() + 60
    while len(wmi(cas, "SMS_DistributionPointInfo")) < len(names):
        if time.time() > deadline:
            sys.exit("the DPs never reached the top")
        time.sleep(0.2)
    src = os.path.join(WORK, "src")
    pkg = cli(cas, "package", "create", "--name", f"fanout{rep}", "--source", src)["PackageID"]
    t0 = time.time()
    cli(cas, "package", "distribute", pkg, *names)
    while True:
        rows = wmi(cas, f"SMS_PackageStatusDistPointsSummarizer?$filter=PackageID%20eq%20'{pkg}'")
        if len(rows) == len(names) and all(r["State"] == 0 for r in rows):
            break
        if time.time() - t0 > 600:
            sys.exit(f"not installed after 600 s: {rows}")
        time.sleep(0.1)
    secs = time.time() - t0
    left_top = sum(c["BytesReceived"] for url in children.values()
                   for c in wmi(url, "PKGDIST_SiteContent") if c["PackageID"] == pkg)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    procs.clear()
    return secs, left_top


def main():
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "pkgdist"], cwd=ROOT, check=True)
    shutil.rmtree(WORK, ignore_errors=True)
    src = os.path.join(WORK, "src")
    os.makedirs(src)
    with open(os.path.join(src, "image.bin"), "wb") as f:
        f.write(os.urandom(MIB << 20))
    size = MIB << 20
    ideal = size / RATE
    runs = []
    try:
        for rep in range(REPS):
            runs.append(one_run(rep))
            print(f"run {rep + 1}: {runs[-1][0]:.2f} s, {runs[-1][1]:,} bytes left the top", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
    times = [r[0] for r in runs]
    med = statistics.median(times)
    bytes_top = statistics.median(r[1] for r in runs)
    n = len(CHILDREN) * DPS_PER_CHILD
    print(f"| package | link rate | DPs | runs | completion median (min-max) | ideal size/rate | "
          f"ratio | bytes leaving the top | / package size |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {MIB} MiB | {RATE / 1e6:g} MB/s | {n} ({len(CHILDREN)} sites x {DPS_PER_CHILD}) | {REPS} | "
          f"{med:.2f} s ({min(times):.2f}-{max(times):.2f}) | {ideal:.2f} s | {med / ideal:.2f}x | "
          f"{bytes_top:,.0f} | {bytes_top / size:.3f} |")


if __name__ == "__main__":
    main()
