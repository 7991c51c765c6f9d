"""Small helpers shared by the benchmarks."""
import subprocess


def sh(*args, check=True, **kw):
    """Runs a command, capturing its output as text; raises on failure unless check=False."""
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def rss_kib(pid):
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    """User + system CPU time of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])
