#!/usr/bin/env python3
"""Benchmark: our SOCKS5 proxy against the C tor client, in one run, on the
same private Tor network (tornet.py) and the same local HTTP server.

    python3 tests/tornet/bench_proxy.py [--rounds 7] [--size-mib 8] [--conflux]

For each round and each client (alternating which goes first):
  * new-circuit time: time to first byte of a request with fresh SOCKS
    credentials, which forces a circuit not used by other credentials
    (both clients may hand out a clean pre-built circuit, as users see);
  * throughput: a SIZE MiB download on the circuit just used;
  * 3-hop circuit build time over the whole run: C tor's from its control
    port (CIRC BUILT time minus TIME_CREATED), ours from the proxy's log.
Prints medians and the ratios ours / C tor. Needs release peersm-node
(cargo build --release -p peersm-node), tor, curl.
"""
import argparse, datetime, json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE = os.environ.get("PEERSM_NODE", os.path.join(ROOT, "target/release/peersm-node"))


def curl(socks_port, creds, url):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", "120", "--socks5-hostname", "127.0.0.1:%d" % socks_port,
         "--proxy-user", creds, "-w", "%{http_code} %{time_starttransfer} %{speed_download} %{size_download}", url],
        capture_output=True, text=True)
    code, ttfb, speed, size = out.stdout.split()
    if code != "200":
        raise RuntimeError("HTTP %s via port %d" % (code, socks_port))
    return float(ttfb), float(speed), int(size)


def watch_ctor_builds(control_port, out):
    """Appends the build time (s) of each general 3-hop circuit C tor builds."""
    sock = socket.create_connection(("127.0.0.1", control_port))
    sock.sendall(b'AUTHENTICATE ""\r\nSETEVENTS CIRC\r\n')
    f = sock.makefile("r")
    for line in f:
        if " BUILT " in line and "PURPOSE=GENERAL" in line and line.count("$") >= 3:
            m = re.search(r"TIME_CREATED=(\S+)", line)
            if m:
                created = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
                out.append((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds())


def wait_fetch(port, url, what):
    for _ in range(60):
        try:
            curl(port, "warmup:x", url)
            return
        except Exception:
            time.sleep(1)
    sys.exit("%s never fetched %s" % (what, url))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size-mib", type=int, default=8)
    ap.add_argument("--conflux", action="store_true", help="leave conflux on in the C tor client (its default)")
    args = ap.parse_args()
    if not os.path.exists(NODE):
        sys.exit("build first: cargo build --release -p peersm-node")

    work = tempfile.mkdtemp(prefix="peersm-bench-")
    www = os.path.join(work, "www")
    os.makedirs(www)
    with open(os.path.join(www, "small"), "wb") as f:
        f.write(os.urandom(1024))
    with open(os.path.join(www, "big"), "wb") as f:
        f.write(os.urandom(args.size_mib << 20))
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=www, **k)
    SimpleHTTPRequestHandler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d/" % httpd.server_address[1]

    net = os.path.join(work, "net")
    cmd = [sys.executable, os.path.join(HERE, "tornet.py"), "start", net, "--client"] + (["--conflux"] if args.conflux else [])
    subprocess.run(cmd, check=True)
    proxy = None
    try:
        info = json.load(open(os.path.join(net, "network.json")))
        client = [n for n in info["nodes"] if n["role"] == "client"][0]
        ctor_port = client["socks_port"]
        ctor_builds = []
        threading.Thread(target=watch_ctor_builds, args=(client["control_port"], ctor_builds), daemon=True).start()
        auth_args = sum((["--dir-authority", l] for l in info["dir_authorities"]), [])
        proxy = subprocess.Popen([NODE, "proxy", "--socks", "127.0.0.1:0"] + auth_args,
                                 stdout=subprocess.PIPE, stderr=open(os.path.join(work, "proxy.log"), "w"), text=True)
        line = proxy.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            sys.exit("proxy did not start: %r (log %s/proxy.log)" % (line, work))
        ours_port = int(m.group(1))
        wait_fetch(ctor_port, base + "small", "C tor")
        wait_fetch(ours_port, base + "small", "peersm")

        results = {"ours": {"ttfb": [], "speed": []}, "ctor": {"ttfb": [], "speed": []}}
        for r in range(args.rounds):
            order = [("ours", ours_port), ("ctor", ctor_port)]
            if r % 2:
                order.reverse()
            for name, port in order:
                creds = "bench%d-%s:x" % (r, name)
                ttfb, _, _ = curl(port, creds, base + "small")
                _, speed, size = curl(port, creds, base + "big")
                assert size == args.size_mib << 20
                results[name]["ttfb"].append(ttfb)
                results[name]["speed"].append(speed)
                time.sleep(1)  # let both refill their spare circuits
        log = open(os.path.join(work, "proxy.log")).read()
        ours_builds = [int(ms) / 1000 for ms in re.findall(r"3-hop circuit built\W+ms\W+(\d+)", log)]
        results["ours"]["build"] = ours_builds
        results["ctor"]["build"] = list(ctor_builds)
        med = {k: {m: statistics.median(v[m]) if v[m] else float("nan") for m in v} for k, v in results.items()}
        print("\n%-8s %22s %22s %24s" % ("", "new-circuit TTFB (ms)", "throughput (MB/s)", "3-hop build (ms, n)"))
        for k in ("ours", "ctor"):
            print("%-8s %22.1f %22.2f %18.1f (%d)" % (k, med[k]["ttfb"] * 1000, med[k]["speed"] / 1e6,
                                                     med[k]["build"] * 1000, len(results[k]["build"])))
        print("\nratio ours/C tor: throughput %.2f (goal >= 1), circuit build time %.2f (goal <= 1), "
              "new-circuit TTFB %.2f" % (med["ours"]["speed"] / med["ctor"]["speed"],
                                         med["ours"]["build"] / med["ctor"]["build"],
                                         med["ours"]["ttfb"] / med["ctor"]["ttfb"]))
        print("C tor conflux: %s; %d rounds of %d MiB; raw samples in %s/results.json" % (
            "on" if args.conflux else "off", args.rounds, args.size_mib, work))
        json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=1)
    finally:
        if proxy:
            proxy.terminate()
        subprocess.run([sys.executable, os.path.join(HERE, "tornet.py"), "stop", net])
        httpd.shutdown()


if __name__ == "__main__":
    main()
