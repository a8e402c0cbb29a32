#!/usr/bin/env bash
# Distribution benchmark (issue 4), on generated data, with `pkgdist up` on loopback:
#   1. initial distribution of a package (a 1 GiB OS-image-like file + 2,000 small files) to N
#      DPs: wall time from `package distribute` to INSTALLED everywhere, bytes each DP received
#   2. refresh after a 64 KiB edit inside the large file: wall time from `package refresh` to
#      INSTALLED at the new version everywhere, bytes each DP received
#   3. peak RSS of the `pkgdist up` process (site + N DPs) over the run
# Prints a Markdown table of medians, min and max. Usage: bench/distribute.sh [REPS] [DPS]
# Needs ~(3 + DPS) GiB free under $WORK (default bench/work, git-ignored). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
DPS=${2:-2}
WORK=${WORK:-bench/work}

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --quiet -p pkgdist -p pkgdist-testkit
PKGDIST=$PWD/target/release/pkgdist
GEN=$PWD/target/release/pkgdist-gen
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
"$GEN" image src/sources/os.img --size 1G --seed 1
"$GEN" tree src/drivers --files 2000 --seed 2
SIZE=$(du -sb src | cut -f1)

now() { date +%s.%N; }
wait_installed() { # package version: polls the status until every DP is INSTALLED at version
  while true; do
    "$PKGDIST" --json status "$1" > status.json
    python3 - "$2" "$DPS" <<'PY' && return 0
import json, sys
s = json.load(open("status.json")); v, n = int(sys.argv[1]), int(sys.argv[2])
rows = s["dps"]
sys.exit(0 if len(rows) == n and all(r["State"] == 0 and r["SourceVersion"] == v for r in rows) else 1)
PY
    sleep 0.05
  done
}
bytes_of() { # package: the BytesTransferred of each DP's newest success message
  "$PKGDIST" --json status "$1" >/dev/null
  curl -s -H "Authorization: Bearer $(cat "$PKGDIST_TOKEN_FILE")" \
    "$PKGDIST_SITE/AdminService/wmi/SMS_DistributionDPStatus?\$filter=PackageID%20eq%20'$1'%20and%20MessageState%20eq%201" |
    python3 -c '
import json, sys
rows = sorted(json.load(sys.stdin)["value"], key=lambda m: m["ID"])
last = {}
for m in rows: last[m["Name"]] = m["BytesTransferred"]
print(" ".join(str(v) for v in last.values()))'
}

: > results
for rep in $(seq "$REPS"); do
  rm -rf data ready.json && sync
  /usr/bin/time -f "%M" -o rss.out "$PKGDIST" up --data data --dps "$DPS" --listen 127.0.0.1:0 --ready-file ready.json > up.log 2>&1 &
  UP=$!
  while [ ! -s ready.json ]; do kill -0 "$UP" 2>/dev/null || { cat up.log; exit 1; }; sleep 0.05; done
  export PKGDIST_SITE="http://$(python3 -c 'import json; print(json.load(open("ready.json"))["site"])')"
  export PKGDIST_TOKEN_FILE=data/site/bootstrap-token
  PKG=$("$PKGDIST" --json package create --name bench --source "$PWD/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)["PackageID"])')
  DPNAMES=$(seq -f "dp%g" 1 "$DPS" | tr '\n' ' ')
  t0=$(now); "$PKGDIST" package distribute "$PKG" $DPNAMES >/dev/null; wait_installed "$PKG" 1; t1=$(now)
  echo "initial $(echo "$t1 - $t0" | bc) $(bytes_of "$PKG")" >> results
  python3 - <<'PY'
import os, random
random.seed(7)
with open("src/sources/os.img", "r+b") as f:
    f.seek(os.path.getsize("src/sources/os.img") // 2)
    f.write(random.randbytes(64 << 10))
PY
  t0=$(now); "$PKGDIST" package refresh "$PKG" >/dev/null; wait_installed "$PKG" 2; t1=$(now)
  echo "refresh_64k $(echo "$t1 - $t0" | bc) $(bytes_of "$PKG")" >> results
  kill -TERM $(pgrep -P "$UP"); wait "$UP" || true
  echo "rss $(cat rss.out)" >> results
  # Undo the edit so every repetition starts from the same data.
  rm -rf src && "$GEN" image src/sources/os.img --size 1G --seed 1 && "$GEN" tree src/drivers --files 2000 --seed 2
done

python3 - "$SIZE" "$DPS" <<'PY'
import statistics, sys
size, dps = int(sys.argv[1]), int(sys.argv[2])
secs, moved, rss = {}, {}, []
for line in open("results"):
    f = line.split()
    if f[0] == "rss":
        rss.append(int(f[1]))
        continue
    secs.setdefault(f[0], []).append(float(f[1]))
    moved.setdefault(f[0], []).extend(int(x) for x in f[2:])
print(f"package: {size} bytes ({size / 2**20:.0f} MiB), {dps} DPs, loopback\n")
print("| scenario | runs | median s | min s | max s | MB/s per DP (median) | bytes received per DP (median) | of package |")
print("|---|---|---|---|---|---|---|---|")
for k, v in secs.items():
    m = statistics.median(v)
    b = statistics.median(moved[k])
    rate = f"{size / m / 1e6:.0f}" if k == "initial" else "–"
    print(f"| {k} | {len(v)} | {m:.2f} | {min(v):.2f} | {max(v):.2f} | {rate} | {b:.0f} | {100 * b / size:.2f}% |")
print(f"\npeak RSS of `pkgdist up` (site + {dps} DPs): max {max(rss) / 1024:.0f} MiB over {len(rss)} runs")
PY
