"""`make demo`'s figures, run as a user runs it: `tracker demo` in a fresh process, N times.

A single demo run says little on a 2-core VM whose speed varies by ~20 % minute to minute:
each run here is a new process (a fresh server, cold caches, as `make demo` starts), and the
file keeps every run's per-case counts beside the worst and the total, so a reader sees the
spread and not one lucky run. Issue #13's target: no `LATE` answer on the DAVIS clip.

    .venv/bin/python bench/bench_demo.py --runs 3 --json bench/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tracker.lab.bench.common import write_json
from tracker.lab.provenance import provenance
from tracker.timing import percentiles

logger = logging.getLogger("bench_demo")

COUNTS = ("frames", "late", "dropped", "errors", "degraded")


def cpu_steal_ms() -> float | None:
    """CPU time the hypervisor gave to others since boot, all cores (Linux /proc/stat), or None.

    A frame that is LATE while the server's own time was short may have waited for a stolen
    core rather than for this code: the difference over a run tells the two apart.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    if fields[0] != "cpu" or len(fields) < 9:
        return None
    return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")


def one_run(out: Path, seed: int) -> list[dict[str, Any]]:
    """Run `tracker demo` in its own process; its per-case rows from report.json."""
    cmd = [sys.executable, "-m", "tracker.cli", "demo", "--out", str(out), "--seed", str(seed)]
    steal_before = cpu_steal_ms()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    steal_after = cpu_steal_ms()
    stolen = None if steal_before is None or steal_after is None else steal_after - steal_before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    rows = []
    for case in report["cases"]:
        server = case.get("server_ms") or {}
        to_server = percentiles(
            (f["to_server_ms"] for f in case.get("per_frame", []) if f.get("to_server_ms") is not None),
            (50,),
        )
        latency = case.get("latency_ms") or {}
        rows.append(
            {
                "case": case["name"],
                "modality": case["modality"],
                "budget_ms": case["budget_ms"],
                **{key: int(case.get(key, 0)) for key in COUNTS},
                "settings": case.get("demo_settings", ""),
                "server_ms_p50": server.get("p50"),
                "server_ms_max": server.get("max"),
                "latency_ms_p99": latency.get("p99"),
                "latency_ms_max": latency.get("max"),
                # From send_frame to the server's receipt (client queue, serialisation,
                # transport): the part of a frame's time that is neither the server's nor the reply's.
                "to_server_ms_p50": to_server["p50"],
                "to_server_ms_max": to_server["max"],
                # The LATE frames: index, end-to-end, server and to-server ms.
                "late_frames": [
                    {key: f.get(key) for key in ("index", "latency_ms", "server_ms", "to_server_ms")}
                    for f in case.get("per_frame", [])
                    if f.get("status") == "LATE"
                ],
                "cpu_steal_ms_during_run": stolen,  # the whole demo run, both cases
            }
        )
    return rows


def summarise(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per case over the runs: every run's LATE count and longest time to reach the server, the
    worst and the total of each count."""
    cases: dict[str, dict[str, Any]] = {}
    for rows in runs:
        for row in rows:
            entry = cases.setdefault(
                row["case"], {"modality": row["modality"], "settings": row["settings"], "late_per_run": []}
            )
            entry["late_per_run"].append(row["late"])
            entry.setdefault("to_server_ms_max_per_run", []).append(row.get("to_server_ms_max"))
            for key in COUNTS:
                entry[f"{key}_total"] = entry.get(f"{key}_total", 0) + row[key]
                entry[f"{key}_worst"] = max(entry.get(f"{key}_worst", 0), row[key])
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="demo runs, each in a fresh process")
    parser.add_argument("--seed", type=int, default=7, help="the synthetic case's seed (the demo's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_provenance = provenance(seed=args.seed)
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for i in tqdm(range(args.runs), desc="demo runs", unit="run"):
            runs.append(one_run(Path(tmp) / f"run{i}", args.seed))
    cases = summarise(runs)
    if all(c["modality"] == "cine_mri" for c in cases.values()):
        parser.error("the demo found no DAVIS clip (set TRACKER_SHARED_DATA): the target is on its video")
    result = {
        "provenance": run_provenance,
        "settings": {"runs": args.runs, "seed": args.seed},
        "runs": runs,
        "cases": cases,
        # The target's figure: the most LATE answers any video case gave in any run.
        "video_late_worst": max(c["late_worst"] for c in cases.values() if c["modality"] != "cine_mri"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, case in cases.items():
        late, degraded = case["late_per_run"], case["degraded_total"]
        logger.info("%s: LATE per run %s, degraded total %d", name, late, degraded)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
