#!/usr/bin/env bash
# TLS's cost on a DP's serving: the same DP (enrolled over https, so it serves TLS and, on
# loopback, plain HTTP too) answering wrk over http and over https, alternating, 3 runs each.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${PKGDIST:-$ROOT/target/release/pkgdist}  # cargo build --release first
D=/tmp/tlsbench; rm -rf $D; mkdir -p $D/src $D/site
python3 - <<'PY'
import os, random
r = random.Random(7)
for i in range(8):
    open(f"/tmp/tlsbench/src/f{i}.bin", "wb").write(r.randbytes(1 << 20))
open("/tmp/tlsbench/src/big.bin", "wb").write(r.randbytes(64 << 20))
PY
cat > $D/site/site.toml <<T
site-code = "TB1"
allowed-source-roots = ["$D"]
[distribution]
poll-ms = 100
T
$B site run --data $D/site --listen 127.0.0.1:0 --ready-file $D/site.json > $D/site.log 2>&1 &
SITE_PID=$!
for i in $(seq 50); do [ -s $D/site.json ] && break; sleep 0.2; done
PORT=$(python3 -c "import json;print(json.load(open('$D/site.json'))['addr'].split(':')[1])")
export PKGDIST_SITE=https://127.0.0.1:$PORT PKGDIST_TOKEN_FILE=$D/site/bootstrap-token
TOK=$($B --json dp add --name dp1 | python3 -c "import json,sys;print(json.load(sys.stdin)['enrollment_token'])")
PKGDIST_ENROLLMENT_TOKEN=$TOK $B dp run --data $D/dp1 --listen 127.0.0.1:0 --ready-file $D/dp.json > $D/dp.log 2>&1 &
DP_PID=$!
for i in $(seq 50); do [ -s $D/dp.json ] && break; sleep 0.2; done
DP=$(python3 -c "import json;print(json.load(open('$D/dp.json'))['addr'])")
PKG=$($B --json package create --name bench --source $D/src | python3 -c "import json,sys;print(json.load(sys.stdin)['PackageID'])")
$B package distribute $PKG dp1 > /dev/null
for i in $(seq 100); do $B status | grep -q "every package is INSTALLED" && break; sleep 0.5; done
echo "site $PORT dp $DP package $PKG"
for file in f3.bin big.bin; do
  for rep in 1 2 3; do
    for scheme in http https; do
      out=$(wrk -t2 -c8 -d8s "$scheme://$DP/content/$PKG/$file" 2>&1)
      echo "$file $scheme rep$rep $(echo "$out" | grep -E 'Requests/sec|Transfer/sec' | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
kill $DP_PID $SITE_PID
