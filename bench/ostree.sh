#!/usr/bin/env bash
# OS trees (issue 16): a Debian root as debootstrap makes it (bookworm, minbase), and a tar
# image of it, as two pkgdist packages on one DP, refreshed after
#   small  a patch: two .deb files, other versions of packages in the tree (libzstd1's
#          security update, libudev1 of another point release), unpacked over it;
#   large  a servicing: a dozen packages (perl, python3, curl, openssl…) unpacked into it;
# side by side with `rsync -a --no-whole-file` and `rsync -az` (zstd) pulling the same changes
# from an rsync daemon into a copy of the previous version. Measured: bytes on the wire (the
# loopback of a private network namespace, both directions, TCP/IP headers included) and
# payload bytes (pkgdist: the DP's BytesTransferred, manifest included; rsync: its --stats
# total sent + received).
#
# Usage: bench/ostree.sh   (as root; ~10 min, ~2 GB of scratch space). Environment: BIN_DIR
# (binaries built elsewhere), KEEP=1 (keep bench/work-ostree). The debootstrap result and the
# .deb files are kept in bench/work-ostree-base (delete it to make them again). Installs
# debootstrap and rsync from Debian's packages when missing. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE=$ROOT/bench/work-ostree-base
W=$ROOT/bench/work-ostree
SMALL_DEBS="libzstd1 libudev1=252.38-1~deb12u1"
LARGE_DEBS="perl perl-modules-5.36 libperl5.36 python3.11-minimal libpython3.11-minimal python3-minimal libpython3.11-stdlib openssl curl libcurl4 ca-certificates libssl3"

if [ -z "${BENCH_IN_NETNS:-}" ]; then
  need=()
  for t in debootstrap:debootstrap rsync:rsync ip:iproute2; do command -v "${t%%:*}" >/dev/null || need+=("${t#*:}"); done
  if [ ${#need[@]} -gt 0 ]; then apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
  mkdir -p "$BASE"
  if [ ! -d "$BASE/root" ]; then
    rm -rf "$BASE/root.tmp"
    debootstrap --variant=minbase bookworm "$BASE/root.tmp" http://deb.debian.org/debian >"$BASE/debootstrap.log"
    mv "$BASE/root.tmp" "$BASE/root"
  fi
  for set in small large; do
    if [ ! -d "$BASE/debs-$set" ]; then
      mkdir -p "$BASE/debs-$set.tmp"
      names=$SMALL_DEBS; [ $set = large ] && names=$LARGE_DEBS
      (cd "$BASE/debs-$set.tmp" && apt-get download -qq $names)
      mv "$BASE/debs-$set.tmp" "$BASE/debs-$set"
    fi
  done
  if [ -n "${BIN_DIR:-}" ]; then BIN_DIR=$(cd "$BIN_DIR" && pwd); else
    cargo build --release --quiet -p pkgdist
    BIN_DIR=$ROOT/target/release
  fi
  export BIN_DIR
  CODE=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo ' with uncommitted changes')
  export CODE
  exec unshare --net env BENCH_IN_NETNS=1 "$ROOT/bench/ostree.sh" "$@"
fi

ip link set lo up
PKGDIST=$BIN_DIR/pkgdist
LIB="python3 $ROOT/bench/runlib.py"
rm -rf "$W" && mkdir -p "$W" && cd "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "${UP:-}" ] && { kill -TERM $(pgrep -P "$UP") 2>/dev/null || true; }
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
lo() { awk '$1 == "lo:" { print $2 }' /proc/net/dev; }
R=$W/results.tsv
: > "$R"

# Version 1: the tree, and the image of it.
mkdir -p src/tree src/image
cp -a "$BASE/root/." src/tree/
image() { tar --sort=name --numeric-owner --xattrs -cf src/image/os.tar -C src/tree . ; }
image
echo "tree: $(find src/tree | wc -l) entries, $(du -sb src/tree | cut -f1) bytes; image: $(stat -c %s src/image/os.tar) bytes" >&2

RPORT=$($LIB freeport)
cat > rsyncd.conf <<EOF
use chroot = no
pid file = $W/rsyncd.pid
[tree]
  path = $W/src/tree
  read only = yes
  uid = root
  gid = root
[image]
  path = $W/src/image
  read only = yes
  uid = root
  gid = root
EOF
rsync --daemon --no-detach --config="$W/rsyncd.conf" --address=127.0.0.1 --port="$RPORT" &
PIDS+=($!)

"$PKGDIST" up --data data --dps 1 --listen 127.0.0.1:0 --ready-file ready.json > up.log 2>&1 &
UP=$!
while [ ! -s ready.json ]; do kill -0 "$UP" 2>/dev/null || { cat up.log; exit 1; }; sleep 0.05; done
export PKGDIST_SITE="http://$(python3 -c 'import json; print(json.load(open("ready.json"))["site"])')"
export PKGDIST_TOKEN_FILE=$W/data/site/bootstrap-token
declare -A PKG
for form in tree image; do
  PKG[$form]=$("$PKGDIST" --json package create --name "os $form" --source "$W/src/$form" | python3 -c 'import json,sys; print(json.load(sys.stdin)["PackageID"])')
  "$PKGDIST" package distribute "${PKG[$form]}" dp1 >/dev/null
  $LIB wait "$PKGDIST_SITE" "$PKGDIST_TOKEN_FILE" "${PKG[$form]}" 1 1
  for tool in rsync rsync-z; do rsync -a "rsync://127.0.0.1:$RPORT/$form/" "$tool-$form/"; done
done

version=1
for change in small large; do
  for deb in "$BASE/debs-$change"/*.deb; do dpkg-deb -x "$deb" src/tree; done
  image
  version=$((version + 1))
  for form in tree image; do
    pkg=${PKG[$form]}
    l0=$(lo)
    "$PKGDIST" package refresh "$pkg" >/dev/null
    $LIB wait "$PKGDIST_SITE" "$PKGDIST_TOKEN_FILE" "$pkg" "$version" 1
    l1=$(lo)
    printf '%s\t%s\tpkgdist\t%s\t%s\n' "$change" "$form" "$((l1 - l0))" "$($LIB bytes "$PKGDIST_SITE" "$PKGDIST_TOKEN_FILE" "$pkg")" >> "$R"
    for tool in rsync rsync-z; do
      opts=(--no-whole-file); [ $tool = rsync-z ] && opts=(-z --compress-choice=zstd)
      l0=$(lo)
      rsync -a --delete --stats "${opts[@]}" "rsync://127.0.0.1:$RPORT/$form/" "$tool-$form/" > "$tool.log"
      l1=$(lo)
      printf '%s\t%s\t%s\t%s\t%s\n' "$change" "$form" "$tool" "$((l1 - l0))" "$($LIB rsync "$tool.log")" >> "$R"
    done
  done
done
# Every copy equals the source; the DP's, through `pkgdist fetch`, to the owner and attribute.
for form in tree image; do
  for tool in rsync rsync-z; do
    d=$(rsync -a --dry-run --itemize-changes "src/$form/" "$tool-$form/" | grep -v ' \./$' || true)
    [ -z "$d" ] || { echo "$tool-$form differs: $d" >&2; exit 1; }
  done
done
"$PKGDIST" fetch "${PKG[tree]}" --dp "http://$(python3 -c 'import json; print(json.load(open("ready.json"))["dps"][0])')" fetched >/dev/null
changes=$(rsync -aHAXS --numeric-ids --dry-run --itemize-changes src/tree/ fetched/ | grep -v ' \./$' || true)
[ -z "$changes" ] || { echo "the fetched tree differs: $changes" >&2; exit 1; }

{
  echo "### OS trees: a Debian minbase root and its tar image, patched and serviced ($(date -u +%F), $CODE)"
  echo
  echo "Command: \`bench/ostree.sh\` (as root). Tree: $(find src/tree | wc -l) entries after servicing. Bytes per DP for each refresh; wire: loopback of a private netns, both directions; payload: pkgdist's BytesTransferred (chunks and manifest), rsync's --stats sent + received. The fetched tree matched the source under \`rsync -aHAXS --numeric-ids --dry-run\`."
  echo
  echo "| change | form | pkgdist wire | pkgdist payload | rsync --no-whole-file wire | rsync -z wire | pkgdist / rsync -z |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  python3 - "$R" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {(c, f, t): (int(w), int(p)) for c, f, t, w, p in rows}
for c in ("small", "large"):
    for f in ("tree", "image"):
        pw, pp = by[(c, f, "pkgdist")]
        rw, _ = by[(c, f, "rsync")]
        zw, _ = by[(c, f, "rsync-z")]
        print(f"| {c} | {f} | {pw:,} | {pp:,} | {rw:,} | {zw:,} | {pw / zw:.2f}x |")
PY
} | tee "$W/section.md"
[ -z "${RESULTS:-}" ] || cat "$W/section.md" >> "$RESULTS"
