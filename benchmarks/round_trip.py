"""What one loopback round trip costs in CPU on this machine, by how often it happens.

Two asyncio processes: a client writes 50 bytes and waits for the echo, at a fixed rate or as
fast as it can, for a few seconds each; the CPU each process used over the round trips made.
A service that makes a round trip to PostgreSQL or Kafka pays this around every statement and
request, on top of the work itself. At a moderate rate each one wakes a process from idle,
which costs several times what it costs in a busy process (docs/benchmarks.md: why a steady 25
contacts/s keeps the machine as busy as saturation).

    python benchmarks/round_trip.py [--seconds 5] [--rates 50,200,1000,0]   (0: as fast as it can)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time


async def _serve() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def _ping(port: int, rate: float, seconds: float) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    count, began, cpu = 0, time.perf_counter(), time.process_time()
    due = began
    while time.perf_counter() - began < seconds:
        writer.write(b"x" * 50)
        await reader.read(100)
        count += 1
        if rate:
            due += 1 / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
    writer.close()
    return count, time.process_time() - cpu


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rates", default="50,200,1000,0")
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(_serve())
        return
    args = p.parse_args()
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print("| round trips offered a second | made a second | client CPU µs a round trip"
              " | server CPU µs | both |")
        print("|---|---|---|---|---|")
        for rate in (float(r) for r in args.rates.split(",")):
            before = _cpu_seconds(server.pid)
            count, client = asyncio.run(_ping(port, rate, args.seconds))
            served = _cpu_seconds(server.pid) - before
            print(f"| {f'{rate:g}' if rate else 'as fast as it can'} | {count / args.seconds:,.0f}"
                  f" | {client / count * 1e6:,.0f} | {served / count * 1e6:,.0f}"
                  f" | {(client + served) / count * 1e6:,.0f} |")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
