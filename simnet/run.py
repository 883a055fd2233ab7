"""Run one scenario end to end: runner, targets, report. The CLI and tests call this."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bitterbot.protocol.errors import BitterbotError, first_error
from bitterbot.simnet.errors import SimnetError
from bitterbot.simnet.report import write_report
from bitterbot.simnet.runners import load_runner
from bitterbot.simnet.scenarios import Scenario, evaluate_targets


async def run_scenario(
    scenario: Scenario, *, report_dir: Path | None = None, keep_homes: bool = False
) -> dict[str, Any]:
    """Run ``scenario`` and return ``{"scenario", "metrics", "targets", ...}``.

    Node homes and worker logs go to a temporary folder (removed afterwards unless
    ``keep_homes``); with ``report_dir`` the Markdown report and PNGs are written there.
    """
    runner = load_runner(scenario.kind)
    work = Path(tempfile.mkdtemp(prefix=f"bitterbot-simnet-{scenario.name}-"))
    started = time.monotonic()
    try:
        result = await runner.run(scenario, work)
    except BaseExceptionGroup as group:
        keep_homes = True  # leave the worker logs for whoever debugs the failure
        raise _one_error(group, work) from group
    except BaseException:
        keep_homes = True
        raise
    finally:
        if not keep_homes:
            shutil.rmtree(work, ignore_errors=True)
    targets = evaluate_targets(scenario.targets, result.metrics)
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "kind": scenario.kind,
        "seed": scenario.seed,
        "nodes": scenario.nodes,
        "wall_time_s": round(time.monotonic() - started, 1),
        "metrics": result.metrics,
        "targets": targets,
        "targets_met": all(t["met"] for t in targets),
    }
    if keep_homes:
        summary["work_dir"] = str(work)
    if result.notes:
        summary["notes"] = result.notes
    if report_dir is not None:
        summary["report"] = str(write_report(Path(report_dir), scenario, result, targets))
    return summary


def _one_error(group: BaseExceptionGroup[BaseException], work: Path) -> BaseException:
    """The first Bitterbot error inside a nursery's exception group, for the CLI to print."""
    found = first_error(group, BitterbotError) or first_error(group, KeyboardInterrupt)
    if found is not None:
        return found
    return SimnetError(
        f"the simnet run crashed: {group.exceptions[0]!r}",
        hint=f"node homes and worker logs are kept in {work}; rerun with --debug for the trace",
    )
