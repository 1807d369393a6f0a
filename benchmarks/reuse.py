"""Wall time of a repeated sweep with and without the job cache (writes JSON, prints a summary).

    python benchmarks/reuse.py [--suite climb_vision] [--algos drpo,grpo] [--seeds 0] [--profile quick]
                               [--set key=value ...] [--out FILE]

Runs ``rlbench-med run`` as a user does (a subprocess, stdout to a log) three times on the same
request, in a fresh cache and tracking store:

1. ``first``: nothing cached (data generated, SFT base trained, every job trained and stored);
2. ``reuse``: the same sweep again, in another output folder: every job reused;
3. ``no_reuse``: the same sweep with ``--no-reuse``: data and base cached, every job trained again.

``reuse`` vs ``no_reuse`` is the job cache's saving on a repeated sweep; both still check the data,
score the floors and build the report. Also checks that the reused results.csv equals the first one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _rows(path: Path) -> list[tuple[str, ...]]:
    with open(path, newline="") as fh:
        return sorted(tuple(r.values()) for r in csv.DictReader(fh))


def _sweep(args: argparse.Namespace, out: Path, log: Path, env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "rlbench_med.cli", "run", "--suite", args.suite, "--algos", args.algos,
               "--seeds", args.seeds, "--profile", args.profile, "--out", str(out), *extra]
    for item in args.sets:
        command += ["--set", item]
    start = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    wall = time.perf_counter() - start
    text = log.read_text()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}; see {log}")
    return {"wall_s": round(wall, 2), "reused_jobs": text.count(": reused from the job cache"),
            "trained_jobs": text.count(": started"), "log": str(log)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="climb_vision")
    parser.add_argument("--algos", default="drpo,grpo")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reuse.json"))
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rlbench-reuse-"))
    env = {**os.environ, "RLBENCH_MED_CACHE": str(work / "cache"), "MPLBACKEND": "Agg",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    report: dict[str, Any] = {"suite": args.suite, "algos": args.algos, "seeds": args.seeds, "profile": args.profile,
                              "sets": args.sets, "workdir": str(work)}
    for name, extra in (("first", []), ("reuse", []), ("no_reuse", ["--no-reuse"])):
        report[name] = _sweep(args, work / name, work / f"{name}.log", env, extra)
        print(f"{name:>9}: {report[name]['wall_s']:7.1f} s  ({report[name]['trained_jobs']} trained, "
              f"{report[name]['reused_jobs']} reused)", flush=True)
    if report["reuse"]["reused_jobs"] != report["first"]["trained_jobs"]:
        raise SystemExit(f"the repeated sweep reused {report['reuse']['reused_jobs']} of {report['first']['trained_jobs']} "
                         f"jobs (see {report['reuse']['log']}); was the package edited while the benchmark ran?")
    report["same_results"] = _rows(work / "first" / "results.csv") == _rows(work / "reuse" / "results.csv")
    report["saving"] = round(1 - report["reuse"]["wall_s"] / report["no_reuse"]["wall_s"], 3)
    print(f"repeated sweep: {report['reuse']['wall_s']:.1f} s with reuse vs {report['no_reuse']['wall_s']:.1f} s "
          f"without ({report['saving']:.0%} less); reused results equal the first run's: {report['same_results']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
