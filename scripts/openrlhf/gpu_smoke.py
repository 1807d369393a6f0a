"""One-GPU check of ``--runner openrlhf``: the real pipeline on CUDA, or a plain "could not run".

Runs ``rlbench-med run --runner openrlhf`` on a tiny random Qwen2 chat model (written by
``rlbench_med.runners.openrlhf.tiny_model``) on one GPU, colocated as on a GPU node (actor,
reference and one vLLM engine on the same GPU, sleeping in turn): 2 PPO steps of ``drpo_release``
with a DeepSpeed checkpoint after each, MLflow metrics and the report; then the job is resumed
from its step-1 checkpoint. Each ``verified`` line is printed only when the check beside it
passed on what this run wrote; anything that could not run is listed and the exit status is 1.

Needs a CUDA GPU and the ``openrlhf`` extra (openrlhf, vllm with CUDA, deepspeed, ray). Usage::

    python scripts/openrlhf/gpu_smoke.py --out /tmp/openrlhf-gpu     # exit 0 only if every check passed
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("openrlhf", "vllm", "deepspeed", "ray")
ALGO = "drpo_release"
#: A tiny colocated run: one GPU shared by the actor, the reference and one vLLM engine (sleep mode).
SETTINGS = {
    "device": "cuda", "colocate": "true", "gpus_per_node": "1", "vllm_num_engines": "1",
    "vllm_gpu_memory_utilization": "0.3", "vlm": "false", "n_samples_per_prompt": "4", "rollout_batch_size": "4",
    "micro_rollout_batch_size": "4", "train_batch_size": "8", "micro_train_batch_size": "4", "max_new_tokens": "32",
    "max_len": "768", "max_samples": "8", "eval_max_samples": "16", "checkpoint_every": "1",
    "attn_implementation": "eager", "gradient_checkpointing": "false", "zero_stage": "2", "reward": "release",
    "lr": "1e-3", "startup_timeout_s": "600",
}


def missing() -> list[str]:
    """What this machine lacks for the check (empty: it can run)."""
    lacks = [f"the Python package {name}" for name in NEEDED if importlib.util.find_spec(name) is None]
    import torch

    if not torch.cuda.is_available():
        lacks.append("a CUDA GPU visible to PyTorch")
    elif not lacks:
        from vllm.platforms import current_platform

        if not current_platform.is_cuda():
            lacks.append(f"vLLM's CUDA build (this vLLM targets {current_platform.device_name})")
        try:
            import openrlhf.cli.train_ppo_ray  # noqa: F401  (flash-attn, vLLM, DeepSpeed at top level)
        except ImportError as exc:
            lacks.append(f"an importable OpenRLHF ({exc})")
    return lacks


def run_cli(model: Path, out: Path, *extra: str) -> tuple[int, float]:
    sets = [x for key, value in {**SETTINGS, "model": str(model)}.items() for x in ("--set", f"{key}={value}")]
    argv = [sys.executable, "-m", "rlbench_med.cli", "run", "--suite", "climb_vision", "--algos", ALGO, "--seeds", "0",
            "--runner", "openrlhf", *sets, "--out", str(out / "run"), *extra]
    start = time.perf_counter()
    with (out / "cli.log").open("a") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, timeout=1800).returncode
    return code, time.perf_counter() - start


def metric_steps(job: Path) -> list[int]:
    path = job / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def first_step_metrics(job: Path) -> dict[str, float]:
    path = job / "metrics.jsonl"
    return json.loads(path.read_text().splitlines()[0])["metrics"] if path.is_file() and path.stat().st_size else {}


def has_rows(run: Path) -> bool:
    path = run / "results.csv"
    if not path.is_file():
        return False
    with path.open() as fh:
        return any(row["algo"] == ALGO for row in csv.DictReader(fh))


def training_checks(run: Path, code: int) -> list[tuple[str, bool]]:
    """``(verified line, passed)`` for the first launch, each judged on what it wrote."""
    job = run / "openrlhf" / f"{ALGO}-seed0"
    ckpt = job / "ckpt" / "_actor"
    metrics = first_step_metrics(job)
    return [
        ("the launch exited 0 (vLLM engine, DeepSpeed actor and reference colocated on one GPU)", code == 0),
        ("2 PPO steps logged (metrics.jsonl steps 1, 2 and the final evaluation)", metric_steps(job) == [1, 2, 2]),
        ("step 1 rewards from vLLM rollouts scored by reward.py (train/length_reward > 0)",
         metrics.get("train/length_reward", 0.0) > 0),
        ("a non-zero DeepSpeed gradient at step 1 (openrlhf/actor_grad_norm > 0)",
         metrics.get("openrlhf/actor_grad_norm", 0.0) > 0),
        ("DeepSpeed checkpoints global_step1 and global_step2",
         {p.name for p in ckpt.glob("global_step*")} >= {"global_step1", "global_step2"}),
        ("results.csv rows and report.html written by the sweep", has_rows(run) and (run / "report.html").is_file()),
    ]


def resume_checks(run: Path, code: int, log_before: int) -> list[tuple[str, bool]]:
    """``(verified line, passed)`` for the launch resumed from the step-1 checkpoint."""
    job = run / "openrlhf" / f"{ALGO}-seed0"
    log = (job / "launch.log").read_text(errors="replace")[log_before:] if (job / "launch.log").is_file() else ""
    return [
        ("--resume from the step-1 checkpoint exited 0 and ran step 2 only",
         code == 0 and metric_steps(job)[3:] == [2, 2]),
        ("the resumed launch loaded DeepSpeed's step-1 checkpoint ('global_step': 1)", "'global_step': 1" in log),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the model, the runs and report.json")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"could_not_run": missing(), "checks": []}
    lacks = report["could_not_run"]
    if lacks:
        print("could not run the OpenRLHF GPU check; this machine lacks: " + "; ".join(lacks))  # type: ignore[arg-type]
        print("verified: nothing")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return 1
    import torch

    from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model

    report["device"] = torch.cuda.get_device_name(0)
    os.environ.setdefault("RLBENCH_MED_CACHE", str(out / "cache"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    model = write_tiny_chat_model(out / "model")
    run = out / "run"
    code, seconds = run_cli(model, out)
    checks = training_checks(run, code)
    report["train_s"] = round(seconds, 1)
    job = run / "openrlhf" / f"{ALGO}-seed0"
    if code == 0:
        # as if killed after the step-1 checkpoint: the job's rows gone, 'latest' back at step 1
        (job / "ckpt" / "_actor" / "latest").write_text("global_step1")
        rows = (run / "results.csv").read_text().splitlines()
        (run / "results.csv").write_text("\n".join(r for r in rows if f",{ALGO}," not in r) + "\n")
        log_before = (job / "launch.log").stat().st_size
        code, seconds = run_cli(model, out, "--resume")
        checks += resume_checks(run, code, log_before)
        report["resume_s"] = round(seconds, 1)
    else:
        checks += [(line, False) for line, _ in resume_checks(run, 1, 0)]
    report["checks"] = [{"check": line, "passed": ok} for line, ok in checks]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"device: {report['device']}")
    for line, ok in checks:
        print(("verified: " if ok else "FAILED:   ") + line)
    print(f"logs: {out / 'cli.log'} and {job / 'launch.log'}; report: {out / 'report.json'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
