"""How the real launch (OpenRLHF 0.11.2's ``train_ppo_ray`` with our trainer) refuses a cluster it cannot use.

Ray is started in this process with *logical* GPUs (``num_gpus`` is only a scheduling resource),
and the launch (``device=cuda``) joins it like a multi-node run would (``ray_address``). Every way
it stops is one line. The launch that runs to the end on this CPU (``device=cpu``) is in
``test_real_run.py``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from rlbench_med.runners.base import Job
from rlbench_med.runners.openrlhf import OpenRLHFConfig
from rlbench_med.runners.openrlhf.data import export_prompts
from rlbench_med.runners.openrlhf.flags import launch_command
from rlbench_med.runners.openrlhf.runner import context
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.startup import ERROR_MARK
from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
from tests.runners.openrlhf.conftest import DOMAINS, local_ray, make_samples, require_openrlhf_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_openrlhf_stack()
    return write_tiny_chat_model(tmp_path_factory.mktemp("tiny"))


def run_launch(tmp_path: Path, model: Path, cluster: dict, **config: object) -> tuple[int, str, float]:
    """Start Ray with ``cluster`` resources, run the launch of one grpo job joined to it; (exit, log, seconds)."""
    import ray

    settings = dict(model=str(model), vlm=False, n_samples_per_prompt=2, rollout_batch_size=2,
                    micro_rollout_batch_size=2, train_batch_size=4, micro_train_batch_size=2, max_new_tokens=32,
                    max_len=512, attn_implementation="eager", gradient_checkpointing=False, zero_stage=2)
    settings.update(config)
    with local_ray(**cluster):
        address = ray.get_runtime_context().gcs_address
        cfg = OpenRLHFConfig(ray_address=address, **settings)  # type: ignore[arg-type]
        job = Job(suite="climb_vision", algo="grpo", estimator="grpo", seed=0, config=cfg,
                  data_dir=tmp_path, out_dir=tmp_path / "out")
        ctx = context(job)
        samples = make_samples(tmp_path, 6)
        export_prompts(samples[:4], ctx.paths.train_prompts, vlm=False)
        export_prompts(samples, ctx.paths.eval_prompts, vlm=False)
        RunSpec(estimator="grpo", n_samples_per_prompt=2, domain_names=DOMAINS, group_by="domain", kl_mode="loss",
                kl_coef=cfg.kl_coef, metrics_path=str(ctx.paths.metrics), predictions_path=str(ctx.paths.predictions),
                eval_prompts=str(ctx.paths.eval_prompts), eval_every=0, max_new_tokens=32, max_len=512,
                ray_address=address, startup_timeout_s=cfg.startup_timeout_s).write(ctx.paths.spec)
        start = time.perf_counter()
        with ctx.paths.log.open("w") as log:
            done = subprocess.run(launch_command(ctx), stdout=log, stderr=subprocess.STDOUT, timeout=400)
        seconds = time.perf_counter() - start
        return done.returncode, ctx.paths.log.read_text(errors="replace"), seconds


def last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if line.startswith(ERROR_MARK)]
    assert lines, log[-3000:]
    return lines[-1][len(ERROR_MARK):]


def test_a_cluster_without_the_gpus_fails_at_once_with_what_is_missing(tmp_path, tiny_model):
    code, log, seconds = run_launch(tmp_path, tiny_model, dict(num_cpus=2, num_gpus=1), gpus_per_node=2,
                                    vllm_num_engines=2)
    assert code == 1
    reason = last_error(log)
    assert reason.startswith("the plan needs 2 GPU(s) (actor, reference and vLLM engines colocated on 2) but the "
                             "Ray cluster at ") and " has 1;" in reason
    assert "Traceback" in log and "PolicyModelActor" not in log  # nothing was started


def test_a_placement_group_that_cannot_be_placed_times_out_naming_it(tmp_path, tiny_model):
    # 2 GPUs but 1 CPU: the colocated bundles {GPU: 1, CPU: 1} x 2 can never be reserved
    code, log, seconds = run_launch(tmp_path, tiny_model, dict(num_cpus=1, num_gpus=2), gpus_per_node=2,
                                    vllm_num_engines=2, startup_timeout_s=3.0)
    assert code == 1
    reason = last_error(log)
    assert reason.startswith("waited 3 s for a placement group of 2 bundle(s) {'CPU': 1.0, 'GPU': 1.0}"), reason
    assert "train_ppo_ray.py:" in reason and "startup_timeout_s" in reason
