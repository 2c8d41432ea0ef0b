"""Benchmark: every record of the adversarial corpus through the intake path the service runs.

Each record of `tests/support/adversarial.py` (the inputs of issue 10 and those found while
fixing them) goes through what the intake service does with a consumed Kafka record, minus SQL:
the runtime's decoding (`ServiceRuntime._decode`: CloudEvents envelope, size limit, schema),
`IntakeHandler.understand` (the parse: in a worker process with a deadline for emails and large
records, inline for small chat and voice events), `IntakeHandler.decide` for a new case, and the
canonical JSON of the resulting events as the outbox would publish them (`record_for_event`).

Per record it prints the outcome, the wall time and the extra memory: the growth of the peak
resident set over the resident set before the record, in whichever process parsed it (this one
or the parse worker; peaks are reset through /proc/PID/clear_refs before each record, so this
counts C allocations such as lxml's too). The last line is

    adversarial: slowest <ms> ms (<name>), max memory <MB> MB over <N> inputs

`--isolate` runs each record in a fresh process with a time limit (how the figures before the
fixes were taken, when single records ran for minutes). Needs no Kafka or PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.intake import core  # noqa: E402
from services.intake.app import IntakeHandler  # noqa: E402
from shared.channels import registry  # noqa: E402
from shared.clock import FrozenClock  # noqa: E402
from shared.contracts.base import inbound_cause  # noqa: E402
from shared.outbox import record_for_event  # noqa: E402
from shared.runtime import Rejected, Route, ServiceRuntime  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from tests.support.adversarial import CORPUS, Adversarial  # noqa: E402

NOW = datetime(2026, 11, 24, 10, 5, tzinfo=UTC)
MARKER = "adversarial"


def _status(pid: int, field: str) -> float:
    """A /proc/PID/status figure in MB (0 when unavailable)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _reset_peak(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


async def run_one(handler: Any, runtime: ServiceRuntime, adv: Adversarial) -> tuple[str, str]:
    """(outcome, detail) of one record through the service's path (no SQL)."""
    models = registry.inbound_topics()[adv.topic]
    route = Route(adv.topic, models, dict.fromkeys(models, handler))
    try:
        decoded = runtime._decode(adv.record(), route)
        if decoded is None:
            return "skipped", ""
        envelope, payload = decoded
        if hasattr(handler, "understand"):
            contact = await handler.understand(envelope, payload, NOW)
        else:  # the code before issue 10: the parse ran inline, on the event loop
            try:
                contact = core.understand(envelope.type, payload, NOW, handler.config)
            except core.Unprocessable as exc:
                raise Rejected(str(exc)) from exc
        if contact is None:
            return "contact", "nothing to record"
        cause = inbound_cause(envelope.source, envelope.id)
        if hasattr(handler, "decide"):
            decision, _ = await handler.decide(contact, core.Thread(), cause, NOW)
        else:
            decision, _ = core.decide(contact, core.Thread(), cause, NOW, handler.config)
        size = sum(len(record_for_event(e, runtime.source).value) for e in decision.events)
        return "contact", f"{len(decision.events)} events, {size:,} bytes"
    except Rejected as exc:
        return "rejected", str(exc)[:120]
    except Exception as exc:  # a crash: what issue 10 is about
        return "CRASH", type(exc).__name__


def ordinary_emails() -> list[Adversarial]:
    """Real replies (talon's fixtures, and the fuzzing seeds), as email.received records."""
    from tests.support.adversarial import binary_headers, email
    from tests.support.intake_fixtures import FIXTURES, reply_fixture

    paths = sorted(reply_fixture("talon", "standard_replies").glob("*.eml"))
    paths += sorted(FIXTURES.joinpath("fuzz-seeds", "flanker").glob("*.eml"))
    return [Adversarial(p.stem, "ordinary", "helpdesk.inbound.email",
                        binary_headers("email.received", f"ok-{i}"), email(p.read_bytes()))
            for i, p in enumerate(paths)]


async def overhead(rounds: int = 5) -> dict[str, float]:
    """Mean time per ordinary email through the service's path, inline and in the worker."""
    settings = get_settings()
    runtime = ServiceRuntime(name="intake", settings=settings, clock=FrozenClock(NOW))
    emails = ordinary_emails()
    figures: dict[str, float] = {"emails": len(emails) * rounds}
    for label, workers in (("inline", 0), ("worker", 1)):
        handler = IntakeHandler(settings.model_copy(update={"intake_parse_workers": workers}))
        await handler.start()
        try:
            for adv in emails:  # warm-up: imports, caches, the worker's first pages
                await run_one(handler, runtime, adv)
            started = time.perf_counter()
            for _ in range(rounds):
                for adv in emails:
                    await run_one(handler, runtime, adv)
            figures[label] = (time.perf_counter() - started) * 1000 / (len(emails) * rounds)
        finally:
            await handler.close()
    return figures


async def measure(names: list[str] | None) -> list[dict[str, Any]]:
    settings = get_settings()
    runtime = ServiceRuntime(name="intake", settings=settings, clock=FrozenClock(NOW))
    handler = IntakeHandler(settings)
    results = []
    try:
        if hasattr(handler, "start"):
            await handler.start()
        for adv in CORPUS:
            if names and adv.name not in names:
                continue
            pids = [os.getpid(), *getattr(handler, "worker_pids", list)()]
            before = {pid: _status(pid, "VmRSS") for pid in pids}
            for pid in pids:
                _reset_peak(pid)
            started = time.perf_counter()
            outcome, detail = await run_one(handler, runtime, adv)
            elapsed = (time.perf_counter() - started) * 1000
            extra = max(max(0.0, _status(pid, "VmHWM") - before[pid]) for pid in pids)
            results.append({"name": adv.name, "outcome": outcome, "ms": elapsed, "mb": extra,
                            "detail": detail, "owner": adv.owner})
    finally:
        if hasattr(handler, "close"):
            await handler.close()
    return results


def isolated(names: list[str] | None, timeout: float) -> list[dict[str, Any]]:
    results = []
    for adv in CORPUS:
        if names and adv.name not in names:
            continue
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--only", adv.name, "--json", "--no-record"],
                capture_output=True, text=True, timeout=timeout, check=False)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            results.append(json.loads(lines[-1]) if lines else {
                "name": adv.name, "outcome": "CRASH", "ms": float("nan"), "mb": float("nan"),
                "detail": done.stderr.strip().splitlines()[-1][:120] if done.stderr else "",
                "owner": adv.owner})
        except subprocess.TimeoutExpired:
            results.append({"name": adv.name, "outcome": "TIMEOUT", "ms": timeout * 1000,
                            "mb": float("nan"), "detail": f"> {timeout:.0f} s",
                            "owner": adv.owner})
        print(_line(results[-1]), flush=True)
    return results


def _line(r: dict[str, Any]) -> str:
    return (f"  {r['name']:<36} {r['outcome']:<9} {r['ms']:>10.1f} ms {r['mb']:>8.1f} MB"
            f"  {r['detail']}")


def record(results: list[dict[str, Any]], summary: str, cost: dict[str, float] | None) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = f"<!-- {MARKER}:start -->", f"<!-- {MARKER}:end -->"
    rows = [f"| `{r['name']}` | {r['outcome']} | {r['ms']:,.1f} | {r['mb']:,.1f} |"
            for r in results]
    block = "\n".join([
        start, "",
        (f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores"
        f" (shared), Python {sys.version.split()[0]}; `{summary}`."), "",
        *([(f"Ordinary email through the service's path ({cost['emails']:.0f} parses of real"
           f" replies): {cost['inline']:.2f} ms inline, {cost['worker']:.2f} ms in the parse"
           f" worker, so the worker costs {cost['worker'] - cost['inline']:.2f} ms per email."),
           ""] if cost else []),
        "| input | outcome | ms | extra MB |", "|---|---|---|---|", *rows, "", end])
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n## Adversarial inputs (`benchmarks/adversarial.py`)\n\n{block}\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="run only this input (repeatable)")
    parser.add_argument("--isolate", action="store_true",
                        help="each input in a fresh process, with --timeout")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.isolate:
        results = isolated(args.only, args.timeout)
    else:
        results = asyncio.run(measure(args.only))
        for r in results:
            print(json.dumps(r) if args.json else _line(r), flush=True)
    if args.json:
        return
    slowest = max(results, key=lambda r: r["ms"])
    memory = max(r["mb"] for r in results)
    crashes = [r["name"] for r in results if r["outcome"] in ("CRASH", "TIMEOUT")]
    summary = (f"adversarial: slowest {slowest['ms']:.0f} ms ({slowest['name']}), max memory "
               f"{memory:.0f} MB over {len(results)} inputs")
    if crashes:
        print(f"crashed or timed out: {', '.join(crashes)}")
    cost = None
    if not args.only and not args.isolate and hasattr(IntakeHandler, "understand"):
        cost = asyncio.run(overhead())
        print(f"ordinary email: {cost['inline']:.2f} ms inline, {cost['worker']:.2f} ms in the"
              f" worker ({cost['emails']:.0f} parses)")
    print(summary)
    if not args.no_record and not args.only:
        record(results, summary, cost)


if __name__ == "__main__":
    main()
