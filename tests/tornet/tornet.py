#!/usr/bin/env python3
"""A private Tor network of Debian `tor` processes on 127.0.0.1.

    tornet.py start DIR [--authorities 3] [--relays 2] [--exits 1] [--client]
    tornet.py stop DIR

`start` writes torrcs and keys under DIR, launches every tor, waits until
the authorities publish a microdescriptor consensus listing every relay (and
until the C tor client, if any, has bootstrapped), then writes
DIR/network.json: DirAuthority lines, each relay's ports and fingerprint,
the client's SocksPort. Everything listens on 127.0.0.1 only.
"""
import argparse, json, os, re, signal, socket, subprocess, sys, time, urllib.request

TOR = os.environ.get("TOR", "tor")
GENCERT = os.environ.get("TOR_GENCERT", "tor-gencert")

# Voting every 20 s; flags voted for at once (TestingTorNetwork sets the
# rest of the fast-schedule testing defaults).
COMMON = """TestingTorNetwork 1
Address 127.0.0.1
DataDirectory {dir}
PidFile {dir}/pid
Log notice file {dir}/notice.log
SafeLogging 0
ProtocolWarnings 1
ShutdownWaitLength 0
Sandbox 0
ConnLimit 64
TestingV3AuthInitialVotingInterval 20
TestingV3AuthInitialVoteDelay 4
TestingV3AuthInitialDistDelay 4
V3AuthVotingInterval 20
V3AuthVoteDelay 4
V3AuthDistDelay 4
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
"""


_taken = set()


def free_port():
    """A port free now and not handed out before in this run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _taken:
            _taken.add(port)
            return port


def fingerprint(node):
    """Creates the node's relay identity key (if missing) and returns its
    fingerprint, with a minimal torrc that needs no DirAuthority lines."""
    torrc = os.path.join(node["dir"], "fingerprint.torrc")
    with open(torrc, "w") as f:
        f.write("DataDirectory {}\nORPort 127.0.0.1:{}\nExitRelay 0\n".format(node["dir"], node["or_port"]))
    subprocess.run([TOR, "-f", torrc, "--list-fingerprint", "--quiet"], capture_output=True, check=True)
    with open(os.path.join(node["dir"], "fingerprint")) as f:
        return f.read().split()[1]


def make_node(root, name, role):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "keys"), exist_ok=True)
    os.chmod(d, 0o700)
    return {"name": name, "role": role, "dir": d, "or_port": free_port(), "dir_port": free_port()}


def write_torrc(node, dir_authorities, extra):
    text = COMMON.format(dir=node["dir"]) + "Nickname {}\nContactInfo peersm-test\n".format(node["name"])
    text += "".join("DirAuthority {}\n".format(line) for line in dir_authorities)
    text += extra
    path = os.path.join(node["dir"], "torrc")
    with open(path, "w") as f:
        f.write(text)
    return path


def start(args):
    root = os.path.abspath(args.dir)
    os.makedirs(root, exist_ok=True)
    nodes = [make_node(root, "auth%d" % i, "authority") for i in range(args.authorities)]
    nodes += [make_node(root, "relay%d" % i, "relay") for i in range(args.relays)]
    nodes += [make_node(root, "exit%d" % i, "exit") for i in range(args.exits)]

    # Authority keys: a v3 identity (tor-gencert) and a relay identity.
    auth_lines = []
    for n in nodes:
        if n["role"] != "authority":
            continue
        keys = os.path.join(n["dir"], "keys")
        subprocess.run([GENCERT, "--create-identity-key", "-m", "12",
                        "-a", "127.0.0.1:%d" % n["dir_port"],
                        "-i", keys + "/authority_identity_key", "-s", keys + "/authority_signing_key",
                        "-c", keys + "/authority_certificate", "--passphrase-fd", "0"],
                       input="\n", capture_output=True, text=True, check=True)
        with open(keys + "/authority_certificate") as f:
            v3ident = re.search(r"^fingerprint (\w+)", f.read(), re.M).group(1)
        n["fingerprint"] = fingerprint(n)
        auth_lines.append("{} orport={} no-v2 v3ident={} 127.0.0.1:{} {}".format(
            n["name"], n["or_port"], v3ident, n["dir_port"], n["fingerprint"]))

    for n in nodes:
        ports = "SocksPort 0\nORPort 127.0.0.1:{}\nDirPort 127.0.0.1:{}\nAssumeReachable 1\n".format(n["or_port"], n["dir_port"])
        if n["role"] == "authority":
            extra = ports + "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nExitPolicy reject *:*\n"
        elif n["role"] == "relay":
            extra = ports + "ExitRelay 0\nExitPolicy reject *:*\n"
        else:
            # A policy of only 127.0.0.0/8 is summarised as reject-all;
            # OutboundBindAddress keeps traffic on loopback anyway.
            extra = ports + ("ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicyRejectLocalInterfaces 0\n"
                             "ExitPolicy accept 127.0.0.0/8:*, accept *:*\nOutboundBindAddress 127.0.0.1\n")
        if "fingerprint" not in n:
            n["fingerprint"] = fingerprint(n)
        write_torrc(n, auth_lines, extra)

    if args.client:
        c = make_node(root, "client", "client")
        c["socks_port"] = free_port()
        c["control_port"] = free_port()
        write_torrc(c, auth_lines, "SocksPort 127.0.0.1:{}\nControlPort 127.0.0.1:{}\nConfluxEnabled {}\n".format(
            c["socks_port"], c["control_port"], 1 if args.conflux else 0))
        nodes.append(c)

    procs = []
    for n in nodes:
        with open(os.path.join(n["dir"], "stdout.log"), "w") as out:
            procs.append(subprocess.Popen([TOR, "-f", os.path.join(n["dir"], "torrc")], stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True))
        n["pid"] = procs[-1].pid

    info = {"dir": root, "dir_authorities": auth_lines, "nodes": nodes}
    with open(os.path.join(root, "network.json"), "w") as f:
        json.dump(info, f, indent=1)

    relays = [n for n in nodes if n["role"] != "client"]
    auth = nodes[0]
    deadline = time.time() + args.timeout
    listed = 0
    def check_alive():
        for n, p in zip(nodes, procs):
            if p.poll() is not None:
                stop(args)
                sys.exit("tornet: %s exited:\n%s" % (n["name"], open(os.path.join(n["dir"], "stdout.log")).read()[-2000:]))

    while time.time() < deadline:
        check_alive()
        try:
            url = "http://127.0.0.1:%d/tor/status-vote/current/consensus-microdesc" % auth["dir_port"]
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            listed = len(re.findall(r"^r ", text, re.M))
            if listed >= len(relays):
                break
        except OSError:
            pass
        time.sleep(1)
    else:
        sys.exit("tornet: consensus lists %d of %d relays after %ds (logs in %s)" % (listed, len(relays), args.timeout, root))
    print("tornet: consensus lists all %d relays after %.0fs" % (len(relays), args.timeout - (deadline - time.time())))

    if args.client:
        log = os.path.join(nodes[-1]["dir"], "notice.log")
        while time.time() < deadline:
            check_alive()
            if os.path.exists(log) and "Bootstrapped 100%" in open(log).read():
                break
            time.sleep(1)
        else:
            sys.exit("tornet: the C tor client did not bootstrap (see %s)" % log)
        print("tornet: C tor client bootstrapped, SocksPort 127.0.0.1:%d" % nodes[-1]["socks_port"])


def stop(args):
    path = os.path.join(os.path.abspath(args.dir), "network.json")
    if not os.path.exists(path):
        return
    for n in json.load(open(path))["nodes"]:
        try:
            os.killpg(n["pid"], signal.SIGTERM)
        except (ProcessLookupError, KeyError):
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--authorities", type=int, default=3)
    s.add_argument("--relays", type=int, default=2)
    s.add_argument("--exits", type=int, default=1)
    s.add_argument("--client", action="store_true", help="also run a C tor client with a SocksPort")
    s.add_argument("--conflux", action="store_true", help="leave conflux on in the C tor client")
    s.add_argument("--timeout", type=int, default=150)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    args = ap.parse_args()
    {"start": start, "stop": stop}[args.cmd](args)


if __name__ == "__main__":
    main()
