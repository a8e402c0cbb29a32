#!/usr/bin/env bash
# Content engine benchmarks (issue 2), on generated data:
#   1. ingest of 1 GiB of new data (OS-image-like: half random, a quarter text, zeros, repeats)
#   2. re-snapshot of an unchanged tree (the 1 GiB image + 20,000 small files): the quick check
#   3. peak RSS while ingesting one 10 GiB file
# Prints a Markdown table of medians, min and max. Usage: bench/content.sh [REPS]
# Needs ~25 GiB free under $WORK (default bench/work, git-ignored). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
WORK=${WORK:-bench/work}
BIG_GIB=${BIG_GIB:-10}

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --quiet -p pkgdist -p pkgdist-testkit
PKGDIST=$PWD/target/release/pkgdist
GEN=$PWD/target/release/pkgdist-gen
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"

measure() { # label, command...: appends "label seconds rss_kib" to results
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null
  echo "$label $(cat time.out)" >> results
}

"$GEN" image src/os.img --size 1G --seed 1
for _ in $(seq "$REPS"); do
  rm -rf lib && sync
  measure ingest_1gib "$PKGDIST" content snapshot src --library lib --package-id PS100001
done

"$GEN" tree src/tree --files 20000 --seed 2
rm -rf lib
"$PKGDIST" content snapshot src --library lib --package-id PS100001 >/dev/null
sleep 2.1 # files changed within 2 s of being read are re-read once, by design (racy margin)
"$PKGDIST" content snapshot src --library lib --package-id PS100001 >/dev/null
TREE_BYTES=$(du -sb src | cut -f1)
for _ in $(seq "$REPS"); do
  measure resnapshot_unchanged "$PKGDIST" content snapshot src --library lib --package-id PS100001
done

rm -rf src lib && mkdir -p big
"$GEN" image big/os.img --size "${BIG_GIB}G" --seed 3
sync
measure "ingest_${BIG_GIB}gib" "$PKGDIST" content snapshot big --library lib --package-id PS100002
rm -rf big lib

python3 - "$TREE_BYTES" "$BIG_GIB" <<'PY'
import statistics, sys
tree_bytes, big = int(sys.argv[1]), int(sys.argv[2])
rows = {}
for line in open("results"):
    label, secs, rss = line.split()
    rows.setdefault(label, []).append((float(secs), int(rss)))
sizes = {"ingest_1gib": 1 << 30, f"ingest_{big}gib": big << 30, "resnapshot_unchanged": tree_bytes}
print("| scenario | runs | median s | min s | max s | MB/s (median) | peak RSS MiB (max) |")
print("|---|---|---|---|---|---|---|")
for label, v in rows.items():
    secs = [s for s, _ in v]
    med = statistics.median(secs)
    mbps = sizes[label] / 1e6 / med if label.startswith("ingest") else float("nan")
    rate = f"{mbps:.0f}" if mbps == mbps else "n/a"
    print(f"| {label} | {len(v)} | {med:.2f} | {min(secs):.2f} | {max(secs):.2f} | {rate} | {max(r for _, r in v) / 1024:.0f} |")
PY
