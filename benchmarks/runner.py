"""Speed, memory and learning of the local runner on a suite (writes JSON, prints a summary).

    python benchmarks/runner.py [--suite climb_vision] [--profile quick] [--algos drpo,grpo]
                                [--timing-steps 10] [--set key=value ...] [--out FILE]

Measures, on the machine it runs on: data generation and SFT-base wall time; per RL job its wall
time, rollouts/s and step time split (generate / score / advantage / update); held-out overall
macro-F1 of the base (step 0) and of the final policy; the mean reward over the first and last
fifth of the steps; the advantage share of step time for every registered estimator (short
runs of ``--timing-steps`` steps); and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="climb_vision")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--algos", default="drpo,grpo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="data directory (generated when missing)")
    parser.add_argument("--timing-steps", type=int, default=10, help="steps per estimator for the advantage share")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of each job (the runner's cpu_threads; 1 is the reproducible default)")
    parser.add_argument("--keep-cache", action="store_true", help="reuse a cached SFT base (default: build fresh)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runner.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if not args.keep_cache:
        os.environ["RLBENCH_MED_CACHE"] = tempfile.mkdtemp(prefix="rlbench-bench-")
    from rlbench_med.algorithms import list_estimators
    from rlbench_med.runners.base import Job, MemoryTracker, cache_dir
    from rlbench_med.runners.config import LocalConfig
    from rlbench_med.runners.local import RUNNER
    from rlbench_med.suites.spec import get_suite
    from rlbench_med.suites.synth import generate
    from rlbench_med.typed_config import apply_overrides

    report: dict[str, Any] = {"suite": args.suite, "profile": args.profile, "threads": args.threads,
                              "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    data = args.data or cache_dir() / "data" / f"{args.suite}-{args.profile}-seed0"
    start = time.perf_counter()
    if not (data / "train.jsonl").exists():
        generate(args.suite, data, seed=0, profile=args.profile)
    report["data_s"] = time.perf_counter() - start

    overrides = get_suite(args.suite).run_overrides(args.profile)
    overrides["cpu_threads"] = str(args.threads)
    overrides.update(dict(item.split("=", 1) for item in args.sets))
    config = apply_overrides(LocalConfig(progress=False), overrides, what="--set")
    report["config"] = config.to_dict()
    out_dir = Path(tempfile.mkdtemp(prefix="rlbench-bench-out-"))
    algos = args.algos.split(",")
    jobs = [Job(args.suite, a, a, args.seed, config, data, out_dir) for a in algos]
    for job in jobs:
        RUNNER.check(job)
    start = time.perf_counter()
    RUNNER.prepare(jobs)
    report["base_s"] = time.perf_counter() - start

    report["jobs"] = {}
    for job in jobs:
        tracker = MemoryTracker()
        start = time.perf_counter()
        result = RUNNER.run(job, tracker, False)
        wall = time.perf_counter() - start
        rewards = [v for _, v in tracker.history("train/reward_mean")]
        fifth = max(1, len(rewards) // 5)
        f1 = tracker.history("eval/overall/f1")
        t = result.timings
        report["jobs"][job.algo] = {
            "wall_s": wall,
            "timings": t,
            "step_split": {k: t[k] / t["step_s"] for k in ("generate_s", "score_s", "advantage_s", "update_s")}
            if t["step_s"] else {},
            "f1_curve": f1,
            "f1_base": f1[0][1] if f1 else None,
            "f1_final": f1[-1][1] if f1 else None,
            "reward_first_fifth": sum(rewards[:fifth]) / fifth if rewards else None,
            "reward_last_fifth": sum(rewards[-fifth:]) / fifth if rewards else None,
            "final_overall": {f"{r['algo']}/{r['metric']}": r["value"] for r in result.rows if r["domain"] == "overall"},
        }

    report["advantage_share"] = {}
    if args.timing_steps > 0:
        short = apply_overrides(config, {"steps": str(args.timing_steps), "eval_every": "0", "checkpoint_every": "0",
                                         "eval_max_samples": "1"})
        for name in list_estimators():
            job = Job(args.suite, name, name, args.seed, short, data, out_dir)
            RUNNER.check(job)
            t = RUNNER.run(job, MemoryTracker(), False).timings
            report["advantage_share"][name] = {"advantage_s": t["advantage_s"], "step_s": t["step_s"],
                                               "share": t["advantage_s"] / t["step_s"]}
    report["peak_rss_mb"] = _peak_rss_mb()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    _print_summary(report)
    return report


def _print_summary(report: dict[str, Any]) -> None:
    print(f"{report['suite']} ({report['profile']}), {report['threads']} thread(s): data {report['data_s']:.1f}s, "
          f"SFT base {report['base_s']:.1f}s")
    for algo, job in report["jobs"].items():
        t, split = job["timings"], job["step_split"]
        parts = " ".join(f"{k[:-2]} {v:.0%}" for k, v in split.items())
        base = f"{job['f1_base']:.3f}" if job["f1_base"] is not None else "-"
        final = f"{job['f1_final']:.3f}" if job["f1_final"] is not None else "-"
        reward = (f"reward {job['reward_first_fifth']:.3f} -> {job['reward_last_fifth']:.3f}"
                  if job["reward_first_fifth"] is not None else "")
        print(f"  {algo:>12}: {job['wall_s']:6.1f}s  {t['rollouts_per_s']:6.0f} rollouts/s  "
              f"steps {t['step_s']:.1f}s [{parts}]  f1 {base} -> {final}  {reward}")
        print("      final overall: " + ", ".join(f"{k} {v:.3f}" for k, v in job["final_overall"].items()))
    for name, share in report["advantage_share"].items():
        print(f"  advantage share {name:>22}: {share['share']:.2%} ({share['advantage_s'] * 1000:.0f} ms of "
              f"{share['step_s']:.1f}s)")
    print(f"  peak RSS {report['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
