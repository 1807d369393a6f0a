"""``rlbench-med run --runner openrlhf --set device=cpu``: the whole OpenRLHF pipeline on this CPU.

The real launch (``train_ppo_ray`` with our trainer) under a local Ray it starts with logical
GPUs: vLLM's CPU build generates, DeepSpeed's CPU accelerator trains, the weights are synced,
DeepSpeed checkpoints are written after each of the 2 steps; the runner forwards the metrics to
MLflow and the sweep writes results and the report. Any actor that dies fails the run.

Resuming is checked in parts, each against the real code, without a second launch of the whole
pipeline (two minutes on two cores): ``--resume`` puts ``--ckpt.load_enable`` on OpenRLHF's command
line (test_plan.py), a checkpoint that is incomplete or missing starts afresh (test_runner.py), and
new actors load a real step-1 checkpoint and run step 2 only (test_real_trainer.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlbench_med.cli import main
from rlbench_med.reports.tracking import find_parent_run
from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
from tests.runners.openrlhf.conftest import require_openrlhf_stack

pytestmark = pytest.mark.slow

#: The README's CPU run ("Without GPUs"), without the reference model (kl_coef=0: one process fewer).
CPU_SETTINGS = {
    "device": "cpu", "colocate": "false", "gpus_per_node": "1", "vllm_num_engines": "1", "vlm": "false",
    "n_samples_per_prompt": "2", "rollout_batch_size": "2", "micro_rollout_batch_size": "2",
    "train_batch_size": "4", "micro_train_batch_size": "2", "max_new_tokens": "16", "max_len": "512",
    "max_samples": "4", "eval_max_samples": "8", "checkpoint_every": "1", "attn_implementation": "eager",
    "gradient_checkpointing": "false", "zero_stage": "2", "reward": "release", "kl_coef": "0",
}


def argv(model: Path, out: Path, *extra: str) -> list[str]:
    sets = [x for key, value in {**CPU_SETTINGS, "model": str(model)}.items() for x in ("--set", f"{key}={value}")]
    return ["run", "--suite", "climb_vision", "--algos", "grpo", "--seeds", "0", "--runner", "openrlhf",
            *sets, "--out", str(out), *extra]


def job_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["algo"] == "grpo"]


def test_a_cpu_run_trains_checkpoints_and_reports(tmp_path, tracked, monkeypatch):
    import mlflow

    require_openrlhf_stack()
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    model = write_tiny_chat_model(tmp_path / "model")
    out = tmp_path / "out"
    job = out / "openrlhf" / "grpo-seed0"

    assert main(argv(model, out)) == 0
    assert job_rows(out) and (out / "report.html").is_file()
    ckpt = job / "ckpt" / "_actor"
    assert (ckpt / "latest").read_text() == "global_step2"
    assert {p.name for p in ckpt.glob("global_step*")} == {"global_step1", "global_step2"}
    steps = [json.loads(line)["step"] for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2]  # two training steps, then the final evaluation
    client = mlflow.MlflowClient(tracked)
    parent = find_parent_run(tracked, "rlbench-med/climb_vision")  # the session's store holds other sweeps too
    [run] = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.`rlbench.algo` = 'grpo' and tags.`mlflow.parentRunId` = '{parent.info.run_id}'"))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/reward_mean")] == [1, 2]
    assert run.info.status == "FINISHED"

