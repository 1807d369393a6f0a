"""One-GPU smoke test of ``--runner openrlhf``: tiny model, colocate, 2 steps, checkpoint, resume.

Written for the project's lent GPU machine (one H100/H200, torch + transformers, no vLLM, no
internet, at most 64 MiB of wheels carried per call). What can be carried there:

| piece | size | carried |
| --- | --- | --- |
| openrlhf 0.11.2 wheel | 0.2 MiB | yes (``pip install --no-deps``) |
| deepspeed 0.19.6 sdist | 1.8 MiB | yes (builds without compiled ops, ``--no-build-isolation``) |
| flash_attn shim (scripts/openrlhf/flash_attn_shim) | 4 KiB | yes (flash-attn's CUDA wheel is ~250 MiB: no) |
| ray 2.55.0 wheel | 70.3 MiB | no: over the 64 MiB limit |
| vllm 0.29.0 wheel | 301 MiB | no |

With vLLM and Ray present (a real GPU node with the ``openrlhf`` extra) the script runs the real
runner end to end: ``rlbench_med.runners.openrlhf.launch`` on one GPU, colocated actor/reference/
vLLM, ``drpo_release`` for 2 steps with a checkpoint after each, then a second launch with
``--ckpt.load_enable`` that must restore step 2 and the estimator's history from the checkpoint.
Without them (the lent machine) OpenRLHF's trainer modules cannot even be imported (they import
Ray and vLLM at top level), so it runs what does not need them, on the GPU:
``benchmarks/openrlhf_gpu_check.py`` (the reward module, the advantage hook on CUDA tensors for
every estimator against the CPU result, and 2 RL steps of a tiny Qwen2 with the OpenRLHF
runner's loss) and prints what was not verified. Usage::

    python scripts/openrlhf/gpu_smoke.py --out smoke.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

NOT_VERIFIED_WITHOUT_VLLM_RAY = [
    "OpenRLHF's launch, placement groups and Ray actors (Ray's wheel is over the 64 MiB carry limit)",
    "vLLM generation, sleep/wake-up and the weight sync to vLLM (vLLM is not installed)",
    "DeepSpeed ZeRO training and DeepSpeed checkpoints through PolicyModelActor (its module imports Ray)",
    "checkpoint + resume of the estimator state through OpenRLHF (verified on CPU with stand-ins in CI)",
]


def present(*names: str) -> dict[str, bool]:
    return {name: importlib.util.find_spec(name) is not None for name in names}


def end_to_end(out: Path) -> dict[str, Any]:
    """The real launch on one GPU: 2 steps with checkpoints, then a resumed launch."""
    from rlbench_med.runners.base import Job
    from rlbench_med.runners.openrlhf import OpenRLHFConfig
    from rlbench_med.runners.openrlhf.data import export_prompts
    from rlbench_med.runners.openrlhf.flags import launch_command
    from rlbench_med.runners.openrlhf.runner import context
    from rlbench_med.runners.openrlhf.runspec import RunSpec
    from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
    from rlbench_med.suites.data import load_data
    from rlbench_med.suites.synth import generate

    data_dir = out / "data"
    generate("climb_vision", data_dir, seed=0, profile="quick",
             data_overrides={"min_domain_train": 2, "min_dataset_train": 1, "min_dataset_test": 1, "image_size": 16})
    data = load_data(data_dir)
    model = write_tiny_chat_model(out / "model")
    cfg = OpenRLHFConfig(model=str(model), vlm=False, n_samples_per_prompt=4, rollout_batch_size=4,
                         micro_rollout_batch_size=4, train_batch_size=8, micro_train_batch_size=4, max_new_tokens=32,
                         max_len=768, gpus_per_node=1, vllm_num_engines=1, vllm_gpu_memory_utilization=0.3,
                         max_samples=8, checkpoint_every=1, attn_implementation="eager", zero_stage=2,
                         eval_max_samples=16, lr=1e-4)
    report: dict[str, Any] = {}
    for phase, resume in (("train", False), ("resume", True)):
        job = Job(suite="climb_vision", algo="drpo_release", estimator="drpo_release", seed=0, config=cfg,
                  data_dir=data_dir, out_dir=out / "run")
        ctx = context(job, resume=resume)
        export_prompts(data.train, ctx.paths.train_prompts, vlm=False)
        export_prompts(data.test, ctx.paths.eval_prompts, vlm=False, limit=cfg.eval_max_samples)
        RunSpec(estimator="drpo_release", n_samples_per_prompt=4, domain_names=tuple(data.domains), group_by="domain",
                kl_mode="loss", kl_coef=cfg.kl_coef, metrics_path=str(ctx.paths.metrics),
                predictions_path=str(ctx.paths.predictions), eval_prompts=str(ctx.paths.eval_prompts), eval_every=0,
                max_new_tokens=32, max_len=768, startup_timeout_s=600).write(ctx.paths.spec)
        start = time.perf_counter()
        with ctx.paths.log.open("a") as log:
            code = subprocess.run(launch_command(ctx), stdout=log, stderr=subprocess.STDOUT, timeout=1200).returncode
        steps = [json.loads(line)["step"] for line in ctx.paths.metrics.read_text().splitlines()] \
            if ctx.paths.metrics.is_file() else []
        report[phase] = {"exit": code, "seconds": round(time.perf_counter() - start, 1), "metric_steps": steps,
                         "checkpoints": sorted(p.name for p in (ctx.paths.ckpt / "_actor").glob("global_step*")),
                         "predictions": ctx.paths.predictions.is_file(), "log": str(ctx.paths.log)}
    report["ok"] = (report["train"]["exit"] == 0 and report["train"]["metric_steps"][:2] == [1, 2]
                    and report["resume"]["exit"] == 0 and "global_step2" in report["train"]["checkpoints"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("openrlhf_gpu_smoke.json"))
    parser.add_argument("--device", default="cuda", help="cuda (the smoke test) or cpu (to check the script itself)")
    args = parser.parse_args(argv)
    import torch

    packages = present("openrlhf", "deepspeed", "ray", "vllm", "flash_attn")
    report: dict[str, Any] = {"device": args.device, "cuda": torch.cuda.is_available(), "packages": packages,
                              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"packages present: {packages}", flush=True)
    if args.device.startswith("cuda") and packages["vllm"] and packages["ray"] and packages["openrlhf"]:
        with tempfile.TemporaryDirectory() as tmp:
            report["end_to_end"] = end_to_end(Path(tmp))
        verified = ["real launch on one GPU: 2 steps, checkpoints, resumed launch"] if report["end_to_end"]["ok"] else []
        report["not_verified"] = [] if verified else ["end to end: see end_to_end"]
    else:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import openrlhf_gpu_check

        check_out = args.out.with_name(args.out.stem + "_check.json")
        openrlhf_gpu_check.main(["--device", args.device, "--steps", "2", "--out", str(check_out)])
        report["gpu_check"] = json.loads(check_out.read_text())
        verified = ["reward_func vs the suite reward", "advantage hook on the device for every estimator",
                    "2 RL steps of a tiny Qwen2 with the runner's loss on the device"]
        report["not_verified"] = NOT_VERIFIED_WITHOUT_VLLM_RAY
    report["verified"] = verified
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("verified:\n  " + "\n  ".join(verified or ["nothing"]))
    print("not verified:\n  " + "\n  ".join(report["not_verified"] or ["-"]))
    print(f"wrote {args.out}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
