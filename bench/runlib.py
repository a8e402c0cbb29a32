#!/usr/bin/env python3
"""Helpers of bench/run (issue 8). Subcommands:

  freeport                         a free TCP port on 127.0.0.1
  wait SITE TOKEN_FILE PKG VER N   polls the site (every 0.1 s, one HTTP request, no process
                                   spawned) until N DPs are INSTALLED at SourceVersion VER
  bytes SITE TOKEN_FILE PKG        BytesTransferred of each DP's newest success message
  rsync LOG...                     sum of "Total bytes sent" + "Total bytes received"
  nginx LOG                        sum of the last field ($bytes_sent) of an access log
  wrk OUT                          the JSON line bench/serve.lua printed, checked
  warm BASE LIST SERVED [PATH...]  warms a DP for serving as nginx's page cache is warm: GETs
                                   every path of LIST and each PATH from the DP at BASE (its
                                   package URL), waits until its copies in the folder SERVED
                                   stop changing, then GETs them all again (small files then
                                   in memory, large ones open); prints the number of copies
"""

import json
import re
import socket
import sys
import time
import urllib.parse
import urllib.request


def get(site, token_file, path):
    token = open(token_file).read().strip()
    req = urllib.request.Request(site + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def odata(cls, flt):
    return f"/AdminService/wmi/{cls}?$filter=" + urllib.parse.quote(flt)


def get_all(base, paths):
    """GETs every path below the URL `base` whole, on one connection; each must answer 200."""
    import http.client
    url = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(url.netloc)
    for path in paths:
        c.request("GET", url.path + urllib.parse.quote(path))
        r = c.getresponse()
        while r.read(1 << 20):
            pass
        if r.status != 200:
            sys.exit(f"{path}: {r.status}")


def copies(served):
    """The copies in a DP's folder of served copies, and the ones still being written."""
    import os
    names = os.listdir(served) if os.path.isdir(served) else []
    return sum(not n.startswith("tmp.") for n in names), sum(n.startswith("tmp.") for n in names)


def main(argv):
    cmd = argv[1]
    if cmd == "freeport":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
    elif cmd == "wait":
        site, tok, pkg, ver, n = argv[2], argv[3], argv[4], int(argv[5]), int(argv[6])
        deadline = time.time() + 3600
        while time.time() < deadline:
            rows = get(site, tok, odata("SMS_PackageStatusDistPointsSummarizer",
                                        f"PackageID eq '{pkg}'"))["value"]
            if len(rows) == n and all(r["State"] == 0 and r["SourceVersion"] == ver for r in rows):
                return 0
            if any(r["State"] in (3,) for r in rows):  # INSTALL_FAILED
                sys.exit(f"a DP failed: {rows}")
            time.sleep(0.1)
        sys.exit("timed out waiting for the DPs")
    elif cmd == "bytes":
        site, tok, pkg = argv[2], argv[3], argv[4]
        rows = get(site, tok, odata("SMS_DistributionDPStatus",
                                    f"PackageID eq '{pkg}' and MessageState eq 1"))["value"]
        last = {}
        for m in sorted(rows, key=lambda m: m["ID"]):
            last[m["Name"]] = m["BytesTransferred"]
        print(" ".join(str(last[k]) for k in sorted(last)))
    elif cmd == "rsync":
        total = 0
        for path in argv[2:]:
            text = open(path).read()
            for key in ("Total bytes sent", "Total bytes received"):
                m = re.search(key + r": ([\d,]+)", text)
                if not m:
                    sys.exit(f"{path}: no '{key}' in rsync's --stats output")
                total += int(m.group(1).replace(",", ""))
        print(total)
    elif cmd == "nginx":
        print(sum(int(line.split()[-1]) for line in open(argv[2]) if line.strip()))
    elif cmd == "wrk":
        lines = [l for l in open(argv[2]) if l.startswith("{")]
        if not lines:
            sys.exit(f"{argv[2]}: wrk printed no result:\n" + open(argv[2]).read())
        r = json.loads(lines[-1])
        if r["non2xx"] or r["socket_errors"] or not r["requests"]:
            sys.exit(f"{argv[2]}: failed requests: {r}")
        print(json.dumps(r))
    elif cmd == "warm":
        base, listed, served, extra = argv[2], argv[3], argv[4], argv[5:]
        paths = [l.strip() for l in open(listed) if l.strip()] + extra
        get_all(base, paths)
        last = -1
        while True:
            n, writing = copies(served)
            if n == last and writing == 0:
                break
            last = n
            time.sleep(2)
        get_all(base, paths)
        print(n)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
