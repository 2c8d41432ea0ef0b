"""Requests each process sends to PostgreSQL and Kafka a second, read from the kernel's TCP
counters while a benchmark runs.

Run it beside `benchmarks/e2e.py` during a phase, for example:

    .venv/bin/python benchmarks/e2e.py --contacts 300 --small 300 --phases rates --rates 25 \\
        --rate-seconds 60 --no-record &
    # once the warm-up line is printed:
    .venv/bin/python benchmarks/requests_by_process.py --seconds 10

It counts the data segments (`ss -ti`: `data_segs_out`) each client process sent on its
connections to the listening ports of the running `postgres` and `java` (Kafka) processes.
A service sends one segment per round trip (asyncpg writes a statement's messages at once;
aiokafka a request), so the count over the offered rate is round trips a contact.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from collections import Counter

_PROCESS = re.compile(r'\("([^"]+)",pid=(\d+)')
_SEGMENTS = re.compile(r"data_segs_out:(\d+)")


def _listening() -> dict[str, str]:
    """Listening port → "postgres" or "kafka"."""
    out = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True, check=True).stdout
    ports = {}
    for line in out.splitlines():
        fields = line.split()
        owner = "postgres" if '"postgres"' in line else "kafka" if '"java"' in line else None
        if owner and len(fields) > 3:
            ports[fields[3].rsplit(":", 1)[1]] = owner
    return ports


def _segments() -> dict[tuple[str, str], tuple[int, str]]:
    """(local, peer) → (data segments sent, pid of the process holding it)."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=True).stdout
    found: dict[tuple[str, str], tuple[int, str]] = {}
    current: tuple[str, str, str] | None = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            fields = line.split()
            owner = _PROCESS.search(line)
            current = (fields[3], fields[4], owner.group(2)) if owner and len(fields) > 4 \
                else None
        elif current is not None and (sent := _SEGMENTS.search(line)):
            found[(current[0], current[1])] = (int(sent.group(1)), current[2])
    return found


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ").strip()[:70]
    except OSError:
        return pid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    ports = _listening()
    before = _segments()
    time.sleep(args.seconds)
    after = _segments()
    per: Counter[tuple[str, str]] = Counter()
    for (local, peer), (sent, pid) in after.items():
        server = ports.get(peer.rsplit(":", 1)[1])
        if server is not None:
            per[(_command(pid), server)] += sent - before.get((local, peer), (0, pid))[0]
    print("| process | to | segments a second |")
    print("|---|---|---|")
    for (command, server), count in per.most_common():
        print(f"| {command} | {server} | {count / args.seconds:,.1f} |")


if __name__ == "__main__":
    main()
