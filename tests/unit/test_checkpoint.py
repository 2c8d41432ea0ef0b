"""Signed checkpoints, without a database: what a checkpoint signs, how a file of them is
replayed, and that no change to the file goes unnoticed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.caselog.checkpoint import (
    CheckpointLog,
    Head,
    LogState,
    heads_digest,
    next_checkpoint,
    read_checkpoints,
    signed_record,
)
from shared.caselog.keys import CheckpointKeys, public_key_id

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GUARDS = {"trigger case_log_no_update_delete": {"enabled": "O", "xmin": "700"}}


def keys_of(private: Ed25519PrivateKey) -> CheckpointKeys:
    return CheckpointKeys(private, {public_key_id(private.public_key()): private.public_key()})


KEYS = keys_of(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))


def h(n: int) -> str:
    return f"{n:064x}"


def state(heads: dict[str, Head]) -> LogState:
    return LogState(heads, GUARDS, 0, "switchboard@1")


def write(path: Path, states: list[dict[str, Head]]) -> list[str]:
    """Checkpoints of successive states, appended as the taker does; returns the lines."""
    lines = []
    for heads in states:
        previous = read_checkpoints(path, KEYS)
        still = {c: heads[c][1] if heads[c][0] == previous.heads[c][0] else
                 previous.heads[c][1] for c in heads if c in previous.heads}
        line = signed_record(next_checkpoint(previous, state(heads), still, NOW), KEYS)
        with path.open("a") as f:
            f.write(line + "\n")
        lines.append(line)
    return lines


STATES = [{"a": (1, h(1)), "b": (2, h(2))},
          {"a": (3, h(3)), "b": (2, h(2))},
          {"a": (3, h(3)), "b": (2, h(2)), "c": (1, h(4))}]


def test_replaying_the_file_gives_every_case_s_last_signed_head(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    lines = write(path, STATES)
    bodies = [json.loads(line)["checkpoint"] for line in lines]
    assert [b["heads"] for b in bodies] == [[["a", 1, h(1)], ["b", 2, h(2)]], [["a", 3, h(3)]],
                                            [["c", 1, h(4)]]]
    replayed = read_checkpoints(path, KEYS)
    assert replayed.problems == []
    assert replayed.heads == STATES[-1] and replayed.signed_in == {"a": 2, "b": 1, "c": 3}
    assert bodies[-1]["heads_digest"] == heads_digest(STATES[-1])


def test_an_edited_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    lines = write(path, STATES)
    record = json.loads(lines[1])
    record["checkpoint"]["heads"][0][2] = h(99)  # the owner's preferred history
    path.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")
    problems = read_checkpoints(path, KEYS).problems
    assert problems[0] == "checkpoint file line 2: signature does not verify (checkpoint altered)"


def test_a_removed_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    lines = write(path, STATES)
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    problems = read_checkpoints(path, KEYS).problems
    assert "checkpoint file line 2: checkpoint #3 does not follow #1" in problems[0]


def test_a_checkpoint_signed_with_another_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    write(path, STATES[:1])
    other = keys_of(Ed25519PrivateKey.from_private_bytes(b"\x02" * 32))
    previous = read_checkpoints(path, KEYS)
    with path.open("a") as f:
        f.write(signed_record(next_checkpoint(previous, state(STATES[1]), {"a": h(1)}, NOW),
                              other) + "\n")
    problems = read_checkpoints(path, KEYS).problems
    assert problems == [(f"checkpoint file line 2: signed with unknown key "
                        f"{other.signing_key_id()} (CASELOG_CHECKPOINT_VERIFY_KEYS)")]


def test_a_broken_log_is_never_signed_as_the_new_truth() -> None:
    previous = CheckpointLog()
    previous.heads = {"tail": (5, h(5)), "gone": (2, h(2)), "rewritten": (3, h(3)),
                      "moved_on": (2, h(20)), "fine": (1, h(1))}
    previous.signed_in = dict.fromkeys(previous.heads, 1)
    now = {"tail": (3, h(3)), "rewritten": (3, h(33)), "moved_on": (4, h(40)),
           "fine": (2, h(2))}
    # "moved_on": its tail was deleted and new rows written past it: row 2 is not the signed one
    body = next_checkpoint(previous, state(now), {"moved_on": h(21), "fine": h(1)}, NOW)
    assert body["heads"] == [("fine", 2, h(2))]
    assert body["anomalies"] == [
        ["moved_on", "row 2 changed or gone since checkpoint #1"],
        ["rewritten", "row 3 changed since checkpoint #1"],
        ["tail", "log ends at seq 3, signed up to 5"],
        ["gone", "case gone"],
    ]
    assert body["heads_digest"] == heads_digest({**previous.heads, "fine": (2, h(2))})
