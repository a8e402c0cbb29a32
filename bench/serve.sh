#!/usr/bin/env bash
# Serving (issue 18): one DP of `pkgdist up` against nginx serving the same files from disk
# (`sendfile on`, 2 workers), on the loopback of a private network namespace.
#
#   files   wrk (bench/serve.lua): random whole files of a tree of FILES small files
#   ranges  wrk: random 1 MiB ranges (4 KiB aligned) of an IMAGE-sized image
#           each with every connection count of CONNS, REPS repetitions, alternating who
#           goes first; both servers get the same seeded request sequence
#   big     CLIENTS curl clients downloading one BIG image at once (a WIM during a
#           deployment): aggregate MB/s from the first start to the last end
#
# Before measuring, every file is asked for once from the DP (which then writes its verified
# copies, pkgdist_node::served), and again once the copies are written (small files then in
# memory, large ones open), and read once from the source (nginx's page cache): both servers
# are measured warm.
#
# Usage: bench/serve.sh   (as root; ~15 min; ~3 x (IMAGE + BIG) of scratch space)
# Environment: IMAGE (1G), FILES (20000), BIG (4G), REPS (3), DUR (10 seconds per wrk run),
# CONNS ("8 64"), CLIENTS (8), WORK (bench/work-serve, deleted at the end unless KEEP=1),
# BIN_DIR (binaries to use instead of building this checkout), RESULTS (a file the Markdown
# section is appended to; printed either way). Installs nginx-light, wrk and curl if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=${IMAGE:-1G}; FILES=${FILES:-20000}; BIG=${BIG:-4G}; REPS=${REPS:-3}; DUR=${DUR:-10}
CONNS=${CONNS:-8 64}; CLIENTS=${CLIENTS:-8}; WORK=${WORK:-$ROOT/bench/work-serve}; RESULTS=${RESULTS:-}
COMMAND="IMAGE=$IMAGE FILES=$FILES BIG=$BIG REPS=$REPS DUR=$DUR CONNS=\"$CONNS\" CLIENTS=$CLIENTS bench/serve.sh"

need=()
for t in nginx:nginx-light wrk:wrk curl:curl ip:iproute2; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --quiet -p pkgdist -p pkgdist-testkit
  BIN_DIR=$ROOT/target/release
fi
CODE=${CODE:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo ' with uncommitted changes')}
if [ -z "${BENCH_IN_NETNS:-}" ]; then
  export BIN_DIR CODE IMAGE FILES BIG REPS DUR CONNS CLIENTS WORK RESULTS
  exec unshare --net env BENCH_IN_NETNS=1 "$ROOT/bench/serve.sh" "$@"
fi
ip link set lo up
PKGDIST=$BIN_DIR/pkgdist
GEN=$BIN_DIR/pkgdist-gen
LIB="python3 $ROOT/bench/runlib.py"
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
W=$PWD
R=$W/results.jsonl
: > "$R"
rec() { echo "$1" >> "$R"; }
now() { date +%s.%N; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "${UP:-}" ] && { kill -TERM "$UP" 2>/dev/null || true; }
  wait 2>/dev/null || true
  cd "$ROOT"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "making the source" >&2
"$GEN" image src/image/os.img --size "$IMAGE" --seed 1 >/dev/null
"$GEN" tree src/tree --files "$FILES" --seed 2 >/dev/null
"$GEN" image src/wim/big.wim --size "$BIG" --seed 3 >/dev/null

NPORT=$($LIB freeport)
mkdir -p nginx/logs
cat > nginx/nginx.conf <<EOF
worker_processes 2;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location /files/ { alias $W/src/; }
  }
}
EOF
nginx -p "$W/nginx" -e "$W/nginx/logs/error.log" -c "$W/nginx/nginx.conf" &
PIDS+=($!)

echo "distributing to one DP" >&2
"$PKGDIST" up --data data --dps 1 --listen 127.0.0.1:0 --ready-file ready.json > up.log 2>&1 &
UP=$!
while [ ! -s ready.json ]; do kill -0 "$UP" 2>/dev/null || { cat up.log; exit 1; }; sleep 0.05; done
export PKGDIST_SITE="http://$(python3 -c 'import json; print(json.load(open("ready.json"))["site"])')"
export PKGDIST_TOKEN_FILE=$W/data/site/bootstrap-token
DP1="http://$(python3 -c 'import json; print(json.load(open("ready.json"))["dps"][0])')"
PKG=$("$PKGDIST" --json package create --name serve --source "$W/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)["PackageID"])')
"$PKGDIST" package distribute "$PKG" dp1 >/dev/null
$LIB wait "$PKGDIST_SITE" "$PKGDIST_TOKEN_FILE" "$PKG" 1 1

(cd src && find tree -type f | sort) > files.list
echo image/os.img > image.list
ISIZE=$(stat -c %s src/image/os.img)

echo "warming: every file asked of the DP twice (once its copies are written), every source file read once" >&2
cat src/image/os.img src/wim/big.wim > /dev/null
find src/tree -type f -exec cat {} + > /dev/null
n=$($LIB warm "$DP1/content/$PKG/" files.list data/dp1/served image/os.img wim/big.wim)
rec "{\"s\":\"copies\",\"files\":$n,\"bytes\":$(du -sb data/dp1/served | cut -f1),\"library_bytes\":$(du -sb data/dp1/library | cut -f1)}"
echo "the DP holds $n copies" >&2

serve_one() { # tool base prefix workload list mode conns
  wrk -t2 -c"$7" -d"${DUR}s" --latency -s "$ROOT/bench/serve.lua" "$2" -- "$5" "$3" "$6" "$rep" > wrk.out 2>&1
  rec "{\"s\":\"serve_$4\",\"conns\":$7,\"tool\":\"$1\",\"rep\":$rep,\"wrk\":$($LIB wrk wrk.out)}"
}
big_one() { # tool url: CLIENTS downloads at once
  local t0 t1 i pids=() bytes=0
  t0=$(now)
  for i in $(seq "$CLIENTS"); do
    curl -sS -o /dev/null -w '%{size_download}\n' "$2" > "big$i.out" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  for i in $(seq "$CLIENTS"); do bytes=$((bytes + $(cat "big$i.out"))); done
  rec "{\"s\":\"big\",\"tool\":\"$1\",\"rep\":$rep,\"clients\":$CLIENTS,\"bytes\":$bytes,\"secs\":$(awk "BEGIN { print $t1 - $t0 }")}"
}
for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then ORDER="pkgdist nginx"; else ORDER="nginx pkgdist"; fi
  echo "repetition $rep ($ORDER)" >&2
  for c in $CONNS; do
    for who in $ORDER; do
      case $who in
        pkgdist) base=$DP1; prefix=/content/$PKG/ ;;
        nginx) base=http://127.0.0.1:$NPORT; prefix=/files/ ;;
      esac
      serve_one "$who" "$base" "$prefix" files files.list files "$c"
      serve_one "$who" "$base" "$prefix" ranges image.list "ranges:1048576:$ISIZE" "$c"
    done
  done
  for who in $ORDER; do
    case $who in
      pkgdist) big_one pkgdist "$DP1/content/$PKG/wim/big.wim" ;;
      nginx) big_one nginx "http://127.0.0.1:$NPORT/files/wim/big.wim" ;;
    esac
  done
done
rec "{\"s\":\"up_after\",\"rss_kib\":$(awk '/VmHWM/ { print $2 }' "/proc/$UP/status"),\"threads\":$(awk '/Threads/ { print $2 }' "/proc/$UP/status")}"

python3 - "$R" "$COMMAND" "$CODE" <<'EOF' | tee -a "${RESULTS:-/dev/null}"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
print(f"\n### Serving: one DP vs nginx (`{sys.argv[2]}`, code {sys.argv[3]})\n")
print("| workload | connections | server | runs | MB/s median | min | max | requests/s | p50 ms | p99 ms median | p99 max | MB/s vs nginx | p99 vs nginx |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for w in ("files", "ranges"):
    for c in sorted({r["conns"] for r in rows if r["s"] == f"serve_{w}"}):
        figs = {}
        for tool in ("pkgdist", "nginx"):
            rs = [r["wrk"] for r in rows if r["s"] == f"serve_{w}" and r["conns"] == c and r["tool"] == tool]
            mbs = [r["bytes"] / r["seconds"] / 1e6 for r in rs]
            figs[tool] = (rs, mbs)
        for tool in ("pkgdist", "nginx"):
            rs, mbs = figs[tool]
            p99 = [r["p99_us"] / 1000 for r in rs]
            ratio = med(mbs) / med(figs["nginx"][1]) if tool == "pkgdist" else None
            p99r = med(p99) / med([r["p99_us"] / 1000 for r in figs["nginx"][0]]) if tool == "pkgdist" else None
            print(f"| {w} | {c} | {tool} | {len(rs)} | {med(mbs):,.0f} | {min(mbs):,.0f} | {max(mbs):,.0f} | "
                  f"{med([r['requests'] / r['seconds'] for r in rs]):,.0f} | {med([r['p50_us'] / 1000 for r in rs]):.2f} | "
                  f"{med(p99):.2f} | {max(p99):.2f} | {'%.2f×' % ratio if ratio else '–'} | {'%.2f×' % p99r if p99r else '–'} |")
big = {t: [r["bytes"] / r["secs"] / 1e6 for r in rows if r["s"] == "big" and r["tool"] == t] for t in ("pkgdist", "nginx")}
clients = next((r["clients"] for r in rows if r["s"] == "big"), 0)
print(f"\n{clients} clients downloading one image at once (curl): pkgdist {med(big['pkgdist']):,.0f} MB/s "
      f"(runs {', '.join(f'{x:,.0f}' for x in big['pkgdist'])}), nginx {med(big['nginx']):,.0f} MB/s "
      f"(runs {', '.join(f'{x:,.0f}' for x in big['nginx'])}): **{med(big['pkgdist']) / med(big['nginx']):.2f}×**.")
up = next((r for r in rows if r["s"] == "up_after"), None)
if up:
    print(f"\n`pkgdist up` (the site and the DP) after the runs: peak RSS {up['rss_kib'] / 1024:,.0f} MiB, {up['threads']} threads.")
cp = next(r for r in rows if r["s"] == "copies")
print(f"\nThe DP's verified copies: {cp['files']:,} files, {cp['bytes'] / 1e6:,.0f} MB beside a library of "
      f"{cp['library_bytes'] / 1e6:,.0f} MB.")
EOF
