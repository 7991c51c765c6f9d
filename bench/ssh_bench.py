#!/usr/bin/env python3
"""SSH benchmark: the wsa agent's SSH server next to OpenSSH's sshd, on loopback, in one run.

Both servers serve the same throwaway user (empty home, bash), with the same client, key and
cipher; results are printed side by side with ratios (agent / sshd). Needs root (to create the
user and run sshd) and a Release build of the agent (bench/run.sh builds one).

  sudo bench/ssh_bench.py --agent build/release/src/agent --controld build/release/src/controld
Options shrink the run: --gib 0.25 --connects 20 --keystrokes 300.
"""
import argparse, json, os, pwd, random, select, shutil, signal, socket, statistics, subprocess
import sys, tempfile, time

from benchutil import rss_kib, sh

USER = "wsabench"



def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def ensure_user(home):
    try:
        pwd.getpwnam(USER)
    except KeyError:
        sh("useradd", "-M", "-d", home, "-s", "/bin/bash", USER)
    # Unlock for key logins (sshd refuses locked accounts without PAM); no password works.
    sh("usermod", "-p", "*", "-d", home, USER)
    os.makedirs(home + "/.ssh", exist_ok=True)
    return pwd.getpwnam(USER)



def percentile(xs, p):
    xs = sorted(xs); k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1)); return xs[k]


class Target:
    def __init__(self, name, port, cfg):
        self.name, self.port, self.cfg = name, port, cfg

    def ssh(self, *extra):
        return ["ssh", "-F", self.cfg, *extra, f"{self.name}"]


def write_client_config(path, entries, key, known_hosts):
    with open(path, "w") as f:
        for name, port in entries:
            f.write(f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n"
                    f"  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
                    f"  StrictHostKeyChecking no\n  UserKnownHostsFile {known_hosts}\n"
                    f"  LogLevel ERROR\n  Compression no\n  IdentityAgent none\n")


def bulk(target, cipher, gib, direction):
    n = int(gib * 1024 ** 3)
    if direction == "up":
        cmd = f"head -c {n} /dev/zero | ssh -F {target.cfg} -c {cipher} {target.name} 'cat > /dev/null'"
    else:
        cmd = f"ssh -F {target.cfg} -c {cipher} {target.name} 'head -c {n} /dev/zero' > /dev/null"
    t = time.perf_counter(); subprocess.run(cmd, shell=True, check=True); dt = time.perf_counter() - t
    return n / dt / 2 ** 20


def connect_times(target, runs, extra=()):
    xs = []
    for _ in range(3):
        subprocess.run(target.ssh(*extra) + ["true"], check=True)
    for _ in range(runs):
        t = time.perf_counter(); subprocess.run(target.ssh(*extra) + ["true"], check=True)
        xs.append((time.perf_counter() - t) * 1000)
    return statistics.median(xs), percentile(xs, 95)


def echo_latency(target, samples):
    p = subprocess.Popen(target.ssh("-tt") + ["stty raw -echo; exec cat"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, bufsize=0)
    time.sleep(1.0)
    fd = p.stdout.fileno()
    while select.select([fd], [], [], 0.2)[0]:
        os.read(fd, 65536)
    xs = []
    for i in range(samples):
        t = time.perf_counter(); p.stdin.write(b"x")
        got = b""
        while b"x" not in got:
            r, _, _ = select.select([fd], [], [], 5)
            if not r:
                raise SystemExit("echo timed out")
            got += os.read(fd, 4096)
        xs.append((time.perf_counter() - t) * 1e6)
        time.sleep(random.uniform(0.005, 0.015))
    p.kill(); p.wait()
    return statistics.median(xs), percentile(xs, 99)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--controld", required=True)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--connects", type=int, default=50)
    ap.add_argument("--keystrokes", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark creates a throwaway user and runs sshd")
    work = tempfile.mkdtemp(prefix="wsa-bench-")
    os.chmod(work, 0o755)
    home = os.path.join(work, "home")
    os.makedirs(home)
    pw = ensure_user(home)
    procs = []
    try:
        key = os.path.join(work, "client")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        shutil.copy(key + ".pub", home + "/.ssh/authorized_keys")
        for p in (home, home + "/.ssh", home + "/.ssh/authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(home + "/.ssh", 0o700)
        # OpenSSH sshd
        sshd_port = free_port()
        hk = os.path.join(work, "sshd_host_key")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk)
        sshd_cfg = os.path.join(work, "sshd_config")
        with open(sshd_cfg, "w") as f:
            f.write(f"Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {hk}\n"
                    f"AuthorizedKeysFile {home}/.ssh/authorized_keys\nUsePAM no\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                    "LogLevel ERROR\nPidFile none\nMaxStartups 100\nMaxSessions 100\n")
        os.makedirs("/run/sshd", exist_ok=True)
        procs.append(subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", sshd_cfg]))
        # controld + the agent, running as the same user
        cfg = json.loads(sh(a.controld, "--example-config").stdout)
        cfg["agents"][0]["manifest"] = {}
        cfg_path = os.path.join(work, "controld.json")
        json.dump(cfg, open(cfg_path, "w"))
        grpc_port, agent_ssh_port = free_port(), free_port()
        procs.append(subprocess.Popen([a.controld, "--config", cfg_path, "--data-dir", work + "/cd",
                                       "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", "127.0.0.1:0",
                                       "--stun-listen", "none"],
                                      stderr=subprocess.DEVNULL))
        wait_port(grpc_port)
        tok = os.path.join(home, "token")
        open(tok, "w").write(cfg["agents"][0]["token"])
        os.chown(tok, pw.pw_uid, pw.pw_gid)
        os.chmod(tok, 0o600)
        agent = subprocess.Popen(
            ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", a.agent,
             "--url", f"http://127.0.0.1:{grpc_port}", "--token-file", tok, "--log-dir", home + "/logs",
             "--script-data-dir", home + "/data", "--data-dir", home + "/state",
             "--prometheus-address", "", "--debug-address", "", "--log-level", "warn",
             "--ssh-listen", f"127.0.0.1:{agent_ssh_port}"],
            env={"HOME": home, "PATH": os.environ["PATH"], "USER": USER, "SHELL": "/bin/bash"},
            stderr=open(os.path.join(work, "agent.log"), "w"))
        procs.append(agent)
        wait_port(agent_ssh_port); wait_port(sshd_port)
        client_cfg = os.path.join(work, "ssh_config")
        write_client_config(client_cfg, [("agent", agent_ssh_port), ("sshd", sshd_port)], key,
                            os.path.join(work, "known_hosts"))
        targets = [Target("agent", agent_ssh_port, client_cfg), Target("sshd", sshd_port, client_cfg)]
        results = {"machine": os.uname().release, "gib": a.gib, "bulk": {}, "connect_ms": {},
                   "echo_us": {}, "rss_kib": {}}
        ciphers = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com",
                   "aes256-gcm@openssh.com", "aes128-ctr"]
        print(f"\n{'measure':<46}{'agent':>12}{'sshd':>12}{'agent/sshd':>12}")

        def row(name, x, y, unit):
            ratio = x / y if y else float("nan")
            print(f"{name:<46}{x:>10.1f}{unit:>2}{y:>10.1f}{unit:>2}{ratio:>12.2f}")

        for cipher in ciphers:
            for direction in ("up", "down"):
                # Interleave the two servers so that machine noise hits both alike.
                xs = {t.name: [] for t in targets}
                for _ in range(2):
                    for t in targets:
                        xs[t.name].append(bulk(t, cipher, a.gib, direction))
                ag, sd = max(xs["agent"]), max(xs["sshd"])
                results["bulk"][f"{cipher} {direction}"] = {"agent": ag, "sshd": sd}
                row(f"bulk {a.gib:g} GiB {direction} {cipher} (MiB/s)", ag, sd, "")
        # Default KEX differs (sshd: sntrup761x25519, which libssh 0.10 lacks; agent:
        # curve25519), so connect time is also measured with the same KEX on both.
        for kex, extra in (("default KEX", ()), ("curve25519", ("-o", "KexAlgorithms=curve25519-sha256"))):
            for t in targets:
                results["connect_ms"][f"{t.name} {kex}"] = connect_times(t, a.connects, extra)
            for i, label in enumerate(("median", "p95")):
                row(f"connect `ssh host true`, {kex}, {label} (ms)",
                    results["connect_ms"][f"agent {kex}"][i], results["connect_ms"][f"sshd {kex}"][i], "")
        for t in targets:
            results["echo_us"][t.name] = echo_latency(t, a.keystrokes)
        for i, label in enumerate(("median", "p99")):
            row(f"keystroke echo in a PTY {label} (us)", results["echo_us"]["agent"][i],
                results["echo_us"]["sshd"][i], "")
        # Memory: the agent process idle and with N idle sessions; sshd: listener + per session.
        sshd_pid = procs[0].pid
        idle = {"agent": rss_kib(agent.pid), "sshd": rss_kib(sshd_pid)}
        held = [subprocess.Popen(t.ssh() + ["sleep 120"]) for t in targets for _ in range(a.sessions)]
        time.sleep(3)
        def tree_rss(root):
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                    ppid = int(stat[stat.rfind(")") + 2:].split()[1])
                    comm = stat[stat.find("(") + 1:stat.rfind(")")]
                except OSError:
                    continue
                if (ppid == root or int(pid) == root) and comm in ("sshd", "agent"):
                    total += rss_kib(int(pid))
            return total
        busy = {"agent": rss_kib(agent.pid), "sshd": tree_rss(sshd_pid)}
        for h in held:
            h.kill()
        results["rss_kib"] = {"idle": idle, "busy": busy, "sessions": a.sessions}
        row("resident memory idle (MiB)", idle["agent"] / 1024, idle["sshd"] / 1024, "")
        row(f"resident memory, {a.sessions} sessions (MiB)", busy["agent"] / 1024, busy["sshd"] / 1024, "")
        print("\n(sshd memory counts its listener and per-session processes; bulk figures include "
              "connection setup; ratios > 1 mean the agent is faster for throughput, slower for times)")
        if a.json:
            json.dump(results, open(a.json, "w"), indent=2)
    except BaseException:
        log = os.path.join(work, "agent.log")
        if os.path.exists(log):
            print("--- agent log (tail) ---\n" + "".join(open(log).readlines()[-20:]), file=sys.stderr)
        raise
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
