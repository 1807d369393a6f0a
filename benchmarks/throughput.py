"""Throughput of the local runner: sweep wall and CPU time at 1 and 4 seeds, the RL step's split,
rollouts per core-second, arithmetic as a share of a step; optionally beside another checkout of
the code (writes JSON, prints a summary).

    python benchmarks/throughput.py [--suite climb_vision] [--algos drpo,grpo] [--seeds 0-3]
                                    [--reference DIR] [--reference-set KEY=VALUE ...]
                                    [--quick-start-seeds 0 --quick-start-seeds 0-3]
                                    [--parts sweeps,steps,quick_start] [--set KEY=VALUE ...] [--out FILE]

Each code tree (this one, and with ``--reference`` a checkout of another commit, e.g. a ``git worktree``
of the commit before a change) is measured in fresh subprocesses that import it (``PYTHONPATH``), each
with its own cache and MLflow store:

- ``sweeps``: ``rlbench-med run`` of the suite's quick profile with ``--no-reuse`` (every job trains) at
  the first seed and at ``--seeds``, the data and the SFT base cached by a 1-step run first: wall
  time, and CPU seconds of the sweep with every process it started (``getrusage(RUSAGE_CHILDREN)``);
- ``steps``: in one process with one thread, ``--steps`` RL steps of the first algorithm after one
  untimed step: CPU seconds per step (``time.process_time``), the share of each phase (generation,
  scoring, advantage, update, from the runner's own timings) and of one evaluation of the held-out
  split; rollouts per core-second; the step's floating-point operations (``FlopCounterMode``)
  against the rate of one large single-thread matrix product, as the share of the step that
  arithmetic at that rate would take; and the same step at 4 times the prompts, the most a 4-seed
  batch of the same step could save per rollout.
- ``quick_start``: the README's first command, ``rlbench-med run --suite climb_vision --algos
  drpo,grpo``, in a cold cache (data generated, SFT base trained), at each ``--quick-start-seeds``.

A reference is measured at its own profile, and with ``--reference-set`` (the settings that give it
this tree's profile, e.g. ``prompts_per_step=64``) also at those. Timings are only comparable on a
quiet machine: the JSON keeps the load average before and after each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _environment(tree: Path, work: Path) -> dict[str, str]:
    """Subprocesses import ``tree`` and keep their cache and tracking store in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(tree), "RLBENCH_MED_CACHE": str(work / "cache"), "MPLBACKEND": "Agg",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYTHONDONTWRITEBYTECODE": "1"}


def _timed(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> dict[str, Any]:
    """Run ``command``; its wall time, the CPU seconds of it and every process it started, the load."""
    before, cpu, start = _load(), _child_cpu(), time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}; see {log}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_before": before, "load_after": _load(),
            "log": str(log)}


def _run_command(args: argparse.Namespace, seeds: str, out: Path, sets: list[str], extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "rlbench_med.cli", "run", "--suite", args.suite, "--algos", args.algos,
               "--seeds", seeds, "--out", str(out), *extra]
    for item in sets:
        command += ["--set", item]
    return command


def measure_sweeps(args: argparse.Namespace, tree: Path, work: Path, sets: list[str]) -> dict[str, Any]:
    env = _environment(tree, work)
    first = args.seeds.split(",")[0].split("-")[0]
    _timed(_run_command(args, first, work / "warm", [*sets, "steps=1"], []), env, work / "warm.log", work)
    out: dict[str, Any] = {}
    for name, seeds in (("one_seed", first), ("seeds", args.seeds)):
        out[name] = {"seeds": seeds, **_timed(_run_command(args, seeds, work / name, sets, ["--no-reuse"]), env,
                                              work / f"{name}.log", work)}
    out["wall_ratio"] = round(out["seeds"]["wall_s"] / out["one_seed"]["wall_s"], 3)
    out["cpu_ratio"] = round(out["seeds"]["cpu_s"] / out["one_seed"]["cpu_s"], 3)
    return out


def measure_quick_start(args: argparse.Namespace, tree: Path, work: Path, seeds: str) -> dict[str, Any]:
    env = _environment(tree, work)  # a cache of its own, empty: the first run of a fresh install
    command = [sys.executable, "-m", "rlbench_med.cli", "run", "--suite", "climb_vision", "--algos", "drpo,grpo",
               "--out", str(work / "out")] + (["--seeds", seeds] if seeds else [])
    return {"seeds": seeds or "default", **_timed(command, env, work / "quick_start.log", work)}


def measure_steps(args: argparse.Namespace, tree: Path, work: Path, sets: list[str]) -> dict[str, Any]:
    """``steps`` in a subprocess importing ``tree`` (its data and base cached by the sweeps, else built)."""
    env = _environment(tree, work)
    log = work / "steps.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--in-process-steps", str(log), "--suite", args.suite,
               "--algos", args.algos, "--steps", str(args.steps)]
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(command, env=env, cwd=work, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the step measurement of {tree} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(log.read_text())


def _gemm_rate() -> float:
    """FLOP/s of a 1024^3 single-precision matrix product on one thread (the best of 5)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = min(_cpu_seconds(lambda: a @ b) for _ in range(5))
    return 2 * 1024**3 / best


def _cpu_seconds(fn: Any) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _step_numbers(suite: str, algo: str, overrides: dict[str, str], steps: int) -> dict[str, Any]:
    """The step measurement of one configuration, in this process (module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rlbench_med.runners.local.sft import load_or_train_base
    from rlbench_med.runners.local.train import LocalTrainer, dropout_probability, make_agent, suite_eval_inputs
    from rlbench_med.runners.sweep import SweepRequest, build_plan

    plan = build_plan(SweepRequest(suite=suite, algos=(algo,), seeds=(0,), overrides=overrides,
                                   out=Path(tempfile.mkdtemp(prefix="steps-"))))
    from rlbench_med.runners.sweep import ensure_data

    ensure_data(plan)
    job = next(j for j in plan.jobs if j.algo == algo)
    agent = make_agent(job.config, job.data_dir, torch.device("cpu"))
    drop_p = dropout_probability(job.config, suite_eval_inputs(job))
    base, _, _ = load_or_train_base(agent, job.config, job.data_dir, agent.encoded.train, drop_p, "cpu")
    trainer = LocalTrainer(job, base, agent, drop_p)
    trainer.rl_step()  # untimed: first-call costs (numba's compiled K-means is loaded, caches warm)
    trainer.step += 1
    with FlopCounterMode(display=False) as flops:
        trainer.rl_step()
    trainer.step += 1
    trainer.timings = type(trainer.timings)()
    start = time.process_time()
    for _ in range(steps):
        trainer.rl_step()
        trainer.step += 1
    cpu = (time.process_time() - start) / steps
    t = trainer.timings
    eval_cpu = _cpu_seconds(trainer.evaluate)
    rollouts = t.rollouts / steps
    return {
        "prompts_per_step": job.config.prompts_per_step, "rollouts_per_step": rollouts, "cpu_s_per_step": cpu,
        "rollouts_per_core_s": rollouts / cpu,
        "split": {k: getattr(t, k) / t.step_s for k in ("generate_s", "score_s", "advantage_s", "update_s")},
        "eval_cpu_s": eval_cpu, "eval_records": len(getattr(agent.encoded, "validation", None) or agent.encoded.test),
        "gflop_per_step": flops.get_total_flops() / 1e9,
    }


def in_process_steps(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    algo = args.algos.split(",")[0]
    overrides = dict(item.split("=", 1) for item in args.sets)
    report = _step_numbers(args.suite, algo, overrides, args.steps)
    rate = _gemm_rate()
    report["gemm_gflop_s"] = rate / 1e9
    report["arithmetic_share"] = report["gflop_per_step"] * 1e9 / rate / report["cpu_s_per_step"]
    prompts = int(report["prompts_per_step"])
    wide = _step_numbers(args.suite, algo, {**overrides, "prompts_per_step": str(4 * prompts)}, max(2, args.steps // 4))
    report["four_times_the_prompts"] = {k: wide[k] for k in ("prompts_per_step", "cpu_s_per_step", "rollouts_per_core_s")}
    report["four_times_cpu_ratio"] = wide["cpu_s_per_step"] / report["cpu_s_per_step"]
    report["load"] = _load()
    Path(args.in_process_steps).write_text(json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="climb_vision")
    parser.add_argument("--algos", default="drpo,grpo")
    parser.add_argument("--seeds", default="0-3", help="seeds of the many-seed sweep (the one-seed sweep runs the first)")
    parser.add_argument("--steps", type=int, default=10, help="timed RL steps of the step measurement")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="settings of every run of this tree")
    parser.add_argument("--reference", type=Path, default=None, help="another checkout of the code to measure")
    parser.add_argument("--reference-set", action="append", default=[], metavar="KEY=VALUE",
                        help="settings that give the reference this tree's profile (it is also measured without)")
    parser.add_argument("--quick-start-seeds", action="append", default=None,
                        help="seeds of the quick start runs ('' for its default; repeatable)")
    parser.add_argument("--parts", default="sweeps,steps,quick_start")
    parser.add_argument("--work", type=Path, default=None, help="folder for caches and logs (default: a new temp folder)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    parser.add_argument("--in-process-steps", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process_steps:
        in_process_steps(args)
        return {}

    parts = set(args.parts.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="rlbench-throughput-"))
    trees: list[tuple[str, Path, list[str]]] = [("this", HERE, args.sets)]
    if args.reference is not None:
        reference = args.reference.resolve()
        if args.reference_set:  # without settings to match, the matched run would repeat the reference's own
            trees.append(("reference_matched", reference, args.reference_set))
        trees.append(("reference_own", reference, []))
    report: dict[str, Any] = {"suite": args.suite, "algos": args.algos, "seeds": args.seeds, "cores": os.cpu_count(),
                              "work": str(work), "load_start": _load(), "trees": {}}
    for name, tree, sets in trees:
        entry: dict[str, Any] = {"tree": str(tree), "sets": sets, "commit": _commit(tree)}
        if "steps" in parts:
            entry["steps"] = measure_steps(args, tree, work / name, sets)
            _print_steps(name, entry["steps"])
        if "sweeps" in parts:
            entry["sweeps"] = measure_sweeps(args, tree, work / name, sets)
            _print_sweeps(name, entry["sweeps"])
        report["trees"][name] = entry
    if "quick_start" in parts:
        report["quick_start"] = [measure_quick_start(args, HERE, work / f"quick_start-{i}", seeds)
                                 for i, seeds in enumerate(args.quick_start_seeds or [""])]
        for run in report["quick_start"]:
            print(f"quick start, seeds {run['seeds']}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} CPU s "
                  f"(load {run['load_before'][0]} -> {run['load_after'][0]})")
    _print_comparison(report)
    report["load_end"] = _load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


def _commit(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def _print_steps(name: str, s: dict[str, Any]) -> None:
    split = "  ".join(f"{k[:-2]} {v:.0%}" for k, v in s["split"].items())
    print(f"{name}: {s['prompts_per_step']} prompts x {s['rollouts_per_step'] / s['prompts_per_step']:.0f} rollouts a "
          f"step: {s['cpu_s_per_step'] * 1000:.0f} CPU ms a step, {s['rollouts_per_core_s']:.0f} rollouts per core-second")
    print(f"    step: {split}; an evaluation of {s['eval_records']} records {s['eval_cpu_s']:.2f} CPU s")
    print(f"    {s['gflop_per_step']:.2f} GFLOP a step at {s['gemm_gflop_s']:.0f} GFLOP/s: arithmetic "
          f"{s['arithmetic_share']:.0%} of the step; 4x the prompts cost {s['four_times_cpu_ratio']:.2f}x the CPU "
          f"(a 4-seed batch could save at most {1 - s['four_times_cpu_ratio'] / 4:.0%} a rollout)")


def _print_sweeps(name: str, s: dict[str, Any]) -> None:
    for key in ("one_seed", "seeds"):
        run = s[key]
        print(f"{name}: sweep of seeds {run['seeds']}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} CPU s "
              f"(load {run['load_before'][0]} -> {run['load_after'][0]})")
    print(f"    many seeds / one seed: wall {s['wall_ratio']:.2f}x, CPU {s['cpu_ratio']:.2f}x")


def _print_comparison(report: dict[str, Any]) -> None:
    trees = report["trees"]
    this = trees.get("this", {})
    for ref in ("reference_matched", "reference_own"):
        if ref not in trees:
            continue
        if "steps" in this and "steps" in trees[ref]:
            ratio = this["steps"]["rollouts_per_core_s"] / trees[ref]["steps"]["rollouts_per_core_s"]
            print(f"rollouts per core-second, this / {ref}: {ratio:.2f}x")
        if "sweeps" in this and "sweeps" in trees[ref]:
            for key in ("one_seed", "seeds"):
                wall = this["sweeps"][key]["wall_s"] / trees[ref]["sweeps"][key]["wall_s"]
                cpu = this["sweeps"][key]["cpu_s"] / trees[ref]["sweeps"][key]["cpu_s"]
                print(f"sweep of seeds {this['sweeps'][key]['seeds']}, this / {ref}: wall {wall:.2f}x, CPU {cpu:.2f}x")


if __name__ == "__main__":
    main()
