"""Redaction throughput and worst case over adversarial inputs (no broker, no database).

    .venv/bin/python benchmarks/redaction.py [--mb 1.0]

Prints, for each input, its size and the CPU time `shared.redaction.redact` takes (process time,
so other processes on a shared machine count less; the fastest of `--repeat` runs), then the
ordinary-text throughput and the slowest input. The inputs are the ones that were quadratic or
worse before (a label followed by spaces, long runs of digit groups) and the densest cases for
each detector.
"""

from __future__ import annotations

import argparse
import time

from shared.redaction import redact


def inputs(size: int) -> dict[str, str]:
    def fill(unit: str) -> str:
        return unit * max(1, size // len(unit))

    return {
        '"PIN" + 20,000 spaces (was 14-18 s)': "PIN" + " " * 20_000,
        '"PIN" + spaces': "PIN" + " " * size,
        "customer prose": fill("Hello, my parcel #4521 has not arrived since 2024-03-01, please "
                               "call me back at +1 415 555 0123. Thanks, Maya. "),
        "German and Spanish prose": fill("Mein Paket ist nicht angekommen, bitte rufen Sie mich "
                                         "an. Mi pedido no ha llegado, gracias. "),
        '"1 " (one run of single digits)': fill("1 "),
        '"4 1 1 1 …" (Luhn-valid windows everywhere)': fill("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 "),
        "card numbers with CVV": fill("card 4111 1111 1111 1111 cvv 123. "),
        '"one " (one spoken run)': fill("one "),
        "spoken card numbers": fill("my card is four one one one one one one one one one one "
                                    "one one one one one. "),
        '"<br>1"': fill("<br>1"),
        "fullwidth digits": fill("４１１１ "),
        '"DE89 " (IBAN starts)': fill("DE89 "),
        "IBANs": fill("IBAN DE89 3704 0044 0532 0130 00. "),
        '"password: "': fill("password: "),
        '"my password is "': fill("my password is "),
        '"eyJ"': fill("eyJ"),
        "JWTs": fill("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl "),
        '"a@"': fill("a@"),
        '"-----BEGIN PRIVATE KEY-----"': fill("-----BEGIN PRIVATE KEY-----"),
        '"123-45-6789 "': fill("123-45-6789 "),
        "random-looking tokens": fill("sk_live_4eC39HqLyjWDarjtT1zdp7dc api_key=abc123def456 "),
    }


def _timed(text: str) -> float:
    started = time.process_time()
    redact(text)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=1.0, help="size of each input in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per input; the fastest counts")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    redact("warm up 4111 1111 1111 1111 password: x")
    worst = ("", 0.0)
    prose_rate = 0.0
    for name, text in inputs(size).items():
        elapsed = min(_timed(text) for _ in range(args.repeat))
        print(f"{name:48s} {len(text) / 1e6:6.2f} MB {elapsed:8.3f} s")
        if elapsed > worst[1]:
            worst = (name, elapsed)
        if name == "customer prose":
            prose_rate = len(text) / 1e6 / elapsed
    print(f"ordinary text: {prose_rate:.1f} MB/s; slowest: {worst[0]} in {worst[1]:.3f} s")


if __name__ == "__main__":
    main()
