"""The oracle's comparison, shared by differential.py and agents.py: one
corpus run against LangGraph's own auth (the reference) and against
langgate, and the two records compared against differences.json."""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

HERE = pathlib.Path(__file__).parent


async def run_all(targets: dict[str, Any], corpus: Callable[[Any], Awaitable[None]]) -> None:
    """Runs the corpus against each target in turn (each has a log of
    (step, observation) and an async close), then closes them all."""
    try:
        for t in targets.values():
            await corpus(t)
    finally:
        for t in targets.values():
            await t.close()


def compare(ref: list[tuple[str, Any]], lg: list[tuple[str, Any]], section: str) -> int:
    """Prints one line per step (= or ≠) and the summary, and returns how
    many steps are not accounted for: an unlisted difference, or a step
    listed under section in differences.json that no longer differs (so
    the list stays true). Runs that took different steps count as one."""
    listed = json.loads((HERE / "differences.json").read_text())
    listed = {d["step"]: d for d in listed.get(section, [])}
    if [s for s, _ in ref] != [s for s, _ in lg]:
        print("the two runs took different steps:", [s for s, _ in ref], [s for s, _ in lg], file=sys.stderr)
        return 1
    bad = 0
    for (step, a), (_, b) in zip(ref, lg, strict=True):
        if a == b and step in listed:
            print(f"STALE {step}: listed in differences.json but both now observe {a}")
            bad += 1
        elif a != b and step not in listed:
            print(f"≠ {step}\n    LangGraph: {a}\n    langgate:  {b}")
            bad += 1
        elif a != b:
            print(f"≠ {step} (listed: {listed[step]['why']})\n    LangGraph: {a}\n    langgate:  {b}")
        else:
            print(f"= {step}: {a}")
    differing = sum(1 for (_, a), (_, b) in zip(ref, lg, strict=True) if a != b)
    print(f"{len(ref)} steps, {differing} differences, {bad} not accounted for")
    return bad
