#!/usr/bin/env python3
"""WireGuard benchmark: our engine (wsa-wg, TUN backend) next to wireguard-go, in one run.

Each pairing runs two WireGuard daemons in two network namespaces joined by a veth pair
(underlay 198.18.253.0/24, overlay 100.64.78.0/24), as ../shared/reference/baselines-here.md
measured wireguard-go: iperf3 through the tunnel, receiver-side rate, up (initiator → responder)
and reverse (-R). Pairings: wireguard-go↔wireguard-go (the baseline), wsa-wg↔wireguard-go,
wireguard-go↔wsa-wg wsa-wg↔wsa-wg, and both against wsa-wg on its userspace TCP/IP stack (no TUN: the
iperf3 server listens on the responder's loopback and the stack forwards to it, the agent's
data path). Ratios are against the baseline of the same run, since
on a shared 2-core machine only ratios mean something. Needs root and a Release build
(bench/run.sh wg builds one).

  sudo bench/wg_bench.py --wsa-wg build/release/src/wsa-wg [--seconds 5] [--streams 1]
"""
import argparse, json, os, subprocess, sys, tempfile, time

from benchutil import cpu_ticks, rss_kib, sh

NS = ("wsabench0", "wsabench1")
UNDER = ("198.18.253.1", "198.18.253.2")
OVER = ("100.64.78.1", "100.64.78.2")
PORTS = (51830, 51831)





class Pair:
    def __init__(self, kinds, wsa_wg, tmp):
        self.kinds, self.tmp, self.procs = kinds, tmp, []
        self.ifs = ("wsab0", "wsab1")
        self.cleanup()
        for n in NS:
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", "vwsab0", "type", "veth", "peer", "name", "vwsab1")
        for i in (0, 1):
            sh("ip", "link", "set", f"vwsab{i}", "netns", NS[i])
            sh("ip", "-n", NS[i], "addr", "add", UNDER[i] + "/24", "dev", f"vwsab{i}")
            sh("ip", "-n", NS[i], "link", "set", "lo", "up")
            sh("ip", "-n", NS[i], "link", "set", f"vwsab{i}", "up")
        keys = []
        for i in (0, 1):
            k = sh("wg", "genkey").stdout.strip()
            path = os.path.join(tmp, f"key{i}")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(k + "\n")
            keys.append((path, sh("wg", "pubkey", input=k).stdout.strip()))
        self.metrics = {}
        for i in (0, 1):
            self.metrics[i] = os.path.join(tmp, f"metrics{i}.sock")
            if kinds[i].startswith("wsa-wg"):
                cmd = [wsa_wg, "--log-level", "warn", "--metrics-listen", "unix:" + self.metrics[i]]
                if kinds[i] == "wsa-wg-netstack":
                    cmd += ["--netstack", OVER[i]]
                cmd.append(self.ifs[i])
            else:
                cmd = ["env", "LOG_LEVEL=error", "wireguard-go", "-f", self.ifs[i]]
            log = open(os.path.join(tmp, f"{kinds[i]}{i}.log"), "w")
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", NS[i]] + cmd,
                                               stdout=log, stderr=log))
        for i in (0, 1):
            sock = f"/var/run/wireguard/{self.ifs[i]}.sock"
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"{kinds[i]} did not create {sock}")
        # Responder (side 1) first, then the initiator with the endpoint.
        for i in (1, 0):
            o = 1 - i
            args = ["wg", "set", self.ifs[i], "listen-port", str(PORTS[i]), "private-key",
                    keys[i][0], "peer", keys[o][1], "allowed-ips", OVER[o] + "/32"]
            if i == 0:
                args += ["endpoint", f"{UNDER[1]}:{PORTS[1]}"]
            sh("ip", "netns", "exec", NS[i], *args)
            if kinds[i] == "wsa-wg-netstack":
                continue  # no interface: the userspace stack answers on OVER[i]
            sh("ip", "-n", NS[i], "addr", "add", OVER[i] + "/24", "dev", self.ifs[i])
            sh("ip", "-n", NS[i], "link", "set", self.ifs[i], "up")
        sh("ip", "netns", "exec", NS[0], "ping", "-c", "1", "-W", "5", OVER[1])
        # With the userspace stack, the server listens on the loopback and the stack forwards.
        bind = "127.0.0.1" if kinds[1] == "wsa-wg-netstack" else OVER[1]
        self.iperf = subprocess.Popen(["ip", "netns", "exec", NS[1], "iperf3", "-s", "-B", bind,
                                       "-p", "5201"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        for _ in range(100):
            if "LISTEN" in sh("ip", "netns", "exec", NS[1], "ss", "-Hltn", "sport = :5201").stdout:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("iperf3 -s did not start listening on port 5201")

    def run(self, seconds, streams, reverse):
        t0 = [cpu_ticks(p.pid) for p in self.procs]
        start = time.time()
        args = ["ip", "netns", "exec", NS[0], "iperf3", "-c", OVER[1], "-p", "5201", "-t",
                str(seconds), "-P", str(streams), "-J"] + (["-R"] if reverse else [])
        out = sh(*args, timeout=seconds + 30)
        elapsed = time.time() - start
        t1 = [cpu_ticks(p.pid) for p in self.procs]
        hz = os.sysconf("SC_CLK_TCK")
        j = json.loads(out.stdout)
        end = j["end"]
        return {
            "gbit": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "cpu": [100.0 * (b - a) / hz / elapsed for a, b in zip(t0, t1)],
            "rss": [rss_kib(p.pid) for p in self.procs],
        }

    def drops(self):
        """Non-zero drop counters of the wsa-wg sides (why a run was slow)."""
        out = []
        for i in (0, 1):
            if not self.kinds[i].startswith("wsa-wg"):
                continue
            text = sh("curl", "-s", "--unix-socket", self.metrics[i], "http://x/metrics",
                      check=False).stdout
            for line in text.splitlines():
                if (("dropped" in line or "errors" in line) and not line.startswith("#")
                        and not line.endswith(" 0")):
                    out.append(f"side {i}: {line}")
        return out

    def close(self):
        self.iperf.terminate()
        for p in self.procs:
            p.terminate()
        for p in self.procs + [self.iperf]:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.cleanup()

    def cleanup(self):
        for n in NS:
            sh("ip", "netns", "del", n, check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--wsa-wg", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("wg_bench.py needs root (network namespaces, TUN)")
    pairings = [("wireguard-go", "wireguard-go"), ("wsa-wg", "wireguard-go"),
                ("wireguard-go", "wsa-wg"), ("wsa-wg", "wsa-wg"),
                ("wireguard-go", "wsa-wg-netstack"), ("wsa-wg", "wsa-wg-netstack")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kinds in pairings:
            pair = Pair(kinds, os.path.abspath(a.wsa_wg), tmp)
            try:
                for reverse in (False, True):
                    r = pair.run(a.seconds, a.streams, reverse)
                    r.update(initiator=kinds[0], responder=kinds[1],
                             direction="reverse" if reverse else "up")
                    results.append(r)
                for d in pair.drops():
                    print(f"  {kinds[0]} → {kinds[1]}: {d}", file=sys.stderr)
            finally:
                pair.close()
    base = {r["direction"]: r["gbit"] for r in results if r["initiator"] == r["responder"] == "wireguard-go"}
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print(f"iperf3 through the tunnel, {a.seconds} s, {a.streams} stream(s); ratio = this / "
          "wireguard-go↔wireguard-go in the same run")
    print(f"{'initiator → responder':30} {'dir':8} {'Gbit/s':>7} {'ratio':>6} {'retrans':>8} "
          f"{'CPU init/resp %':>16} {'RSS KiB':>16}")
    for r in results:
        ratio = r["gbit"] / base[r["direction"]] if base.get(r["direction"]) else float("nan")
        print(f"{r['initiator'] + ' → ' + r['responder']:30} {r['direction']:8} {r['gbit']:7.2f} "
              f"{ratio:6.2f} {r['retransmits']:8d} {r['cpu'][0]:7.0f} /{r['cpu'][1]:6.0f} "
              f"{r['rss'][0]:7d} /{r['rss'][1]:7d}")


if __name__ == "__main__":
    main()
