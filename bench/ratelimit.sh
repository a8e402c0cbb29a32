#!/usr/bin/env bash
# Rate-limit benchmark (issue 7): a DP limited to RATE bytes/s (default 10,000,000) receives a
# package from `pkgdist up` on loopback; the rate it is actually sent at is measured from the
# DP's job file (bytes received, recorded after each 8 MiB batch), between the first and the
# last batch, over at least 10 s. Prints each run, the median and its deviation from RATE.
# Usage: bench/ratelimit.sh [REPS] [RATE]. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
RATE=${2:-10000000}
WORK=${WORK:-bench/work-rate}

cargo build --release --quiet -p pkgdist -p pkgdist-testkit
PKGDIST=$PWD/target/release/pkgdist
GEN=$PWD/target/release/pkgdist-gen
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
# Enough for 13 s or more at RATE, whatever the chunks compress to.
"$GEN" image src/os.img --size "$(( RATE * 20 / 1048576 ))M" --seed 3

: > results
for rep in $(seq "$REPS"); do
  rm -rf data ready.json
  "$PKGDIST" up --data data --dps 1 --listen 127.0.0.1:0 --ready-file ready.json > up.log 2>&1 &
  UP=$!
  while [ ! -s ready.json ]; do kill -0 "$UP" 2>/dev/null || { cat up.log; exit 1; }; sleep 0.05; done
  export PKGDIST_SITE="http://$(python3 -c 'import json; print(json.load(open("ready.json"))["site"])')"
  export PKGDIST_TOKEN_FILE=data/site/bootstrap-token
  "$PKGDIST" dp set dp1 --rate-limit "$RATE" > /dev/null
  PKG=$("$PKGDIST" --json package create --name rate --source "$PWD/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)["PackageID"])')
  "$PKGDIST" package distribute "$PKG" dp1 > /dev/null
  # Sample the job file every 10 ms; keep (time, bytes) whenever bytes change.
  python3 - "$PKG" >> results <<'PY'
import glob, json, sys, time
pkg = sys.argv[1]
samples, deadline = [], time.time() + 600
while time.time() < deadline:
    for path in glob.glob(f"data/dp1/jobs/{pkg}-*.json"):
        try:
            j = json.load(open(path))
        except (OSError, ValueError):
            continue
        b = j.get("bytes_received", 0)
        if b and (not samples or samples[-1][1] != b):
            samples.append((time.time(), b))
        if j.get("state") != "running" and samples:
            (t0, b0), (t1, b1) = samples[0], samples[-1]
            print(f"{(b1 - b0) / (t1 - t0):.0f} {t1 - t0:.2f} {b1 - b0}")
            sys.exit(0)
    time.sleep(0.01)
sys.exit("the transfer did not finish")
PY
  kill -TERM "$UP"; wait "$UP" || true
done

python3 - "$RATE" <<'PY'
import statistics, sys
rate = int(sys.argv[1])
runs = [l.split() for l in open("results")]
print(f"limit {rate} B/s; measured between the first and the last batch of each transfer\n")
print("| run | measured B/s | over s | bytes | deviation |")
print("|---|---|---|---|---|")
for i, (r, s, b) in enumerate(runs, 1):
    print(f"| {i} | {float(r):,.0f} | {s} | {int(b):,} | {100 * (float(r) - rate) / rate:+.2f}% |")
m = statistics.median(float(r[0]) for r in runs)
print(f"\nmedian {m:,.0f} B/s: {100 * (m - rate) / rate:+.2f}% from the limit")
PY
