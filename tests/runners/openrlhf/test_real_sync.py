"""An update and the weight sync on OpenRLHF 0.11.2's real actors, on the CPU (``device=cpu``).

The vLLM engine (``RolloutRayActor`` on vLLM's CPU build) and the DeepSpeed actor
(``PolicyModelActor`` on DeepSpeed's CPU accelerator) are the real ones; the update is
OpenRLHF's ``ppo_train``/``training_step`` on advantages set here, and the sync is OpenRLHF's
``broadcast_to_vllm``. The check is the engine's own log probs of fixed responses: equal to the
actor's before the update, unchanged by the update alone, equal to the updated actor's after the
sync and so different from before. The update follows the advantage's sign.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlbench_med.runners.base import Job
from rlbench_med.runners.openrlhf import OpenRLHFConfig
from rlbench_med.runners.openrlhf.flags import openrlhf_flags
from rlbench_med.runners.openrlhf.runner import context
from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
from tests.runners.openrlhf.conftest import openrlhf_main_args, require_openrlhf_stack
from tests.runners.openrlhf.pipeline import actor_logprobs, build_groups, cpu_ray, engine_logprobs

pytestmark = pytest.mark.slow
#: vLLM's CPU kernels and the actor's eager attention both compute in bf16, in different orders.
TOL = 0.05


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    require_openrlhf_stack()
    root = tmp_path_factory.mktemp("sync")
    model = write_tiny_chat_model(root / "model")
    cfg = OpenRLHFConfig(model=str(model), vlm=False, device="cpu", colocate=False, gpus_per_node=1,
                         vllm_num_engines=1, kl_coef=0.0, n_samples_per_prompt=2, rollout_batch_size=1,
                         micro_rollout_batch_size=2, train_batch_size=2, micro_train_batch_size=2, max_new_tokens=16,
                         max_len=256, lr=2e-2, zero_stage=2, attn_implementation="eager", gradient_checkpointing=False,
                         openrlhf_args=("--actor.lr_warmup_ratio=0",))
    job = Job(suite="climb_vision", algo="grpo", estimator="grpo", seed=0, config=cfg, data_dir=root, out_dir=root)
    with pytest.MonkeyPatch.context() as patch:
        args = openrlhf_main_args(openrlhf_flags(context(job)), patch)
    with cpu_ray(num_gpus=2):
        yield model, build_groups(args, str(model), max_steps=4)


def chat(model: Path, responses: list[str]) -> tuple[list[list[int]], int]:
    """Token ids of one prompt followed by each response (+ eos), and where the responses start."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Case 1: what is the diagnosis?"}],
                                           tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rows = [prompt_ids + tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for r in responses]
    return rows, len(prompt_ids)


def experience(rows: list[list[int]], start: int, old: list[torch.Tensor], advantage: list[float]):
    """The batch OpenRLHF's experience maker hands the actor: equal-length rows, response-only action mask."""
    from openrlhf.trainer.ppo_utils import Experience

    sequences = torch.tensor(rows)
    action_mask = torch.zeros(len(rows), sequences.shape[1] - 1, dtype=torch.bool)
    action_mask[:, start - 1 :] = True
    log_probs = torch.zeros(action_mask.shape)
    log_probs[:, start - 1 :] = torch.stack(old)
    adv = torch.tensor(advantage)[:, None] * action_mask
    return Experience(sequences=sequences, attention_mask=torch.ones_like(sequences), action_mask=action_mask,
                      action_log_probs=log_probs, advantages=adv, returns=adv.clone(),
                      rewards=torch.tensor(advantage), info={})


def test_the_engine_generates_from_the_weights_the_actor_trained_after_the_sync(pipeline):
    import ray

    model, groups = pipeline
    engine = groups.engines[0]
    rows, start = chat(model, ["\\boxed{Normal}", "\\boxed{Nevus!}"])  # same length: no padding
    before_engine = [engine_logprobs(engine, r, start) for r in rows]
    before_actor = [actor_logprobs(groups.actor, r, start) for r in rows]
    for e, a in zip(before_engine, before_actor):
        assert torch.allclose(e, a, atol=TOL), (e - a).abs().max()

    # one optimizer step of OpenRLHF's ppo_train: advantage +1 on the first response, -1 on the second
    ray.get(groups.actor.async_run_method_batch("append", experience=[experience(rows, start, before_actor, [1, -1])]))
    [status] = ray.get(groups.actor.async_run_method("fit", kl_ctl=0.0))
    assert status["actor_grad_norm"] > 0
    after_actor = [actor_logprobs(groups.actor, r, start) for r in rows]
    # the responses share most tokens, so compare their changes: the +1 one gains on the -1 one
    gain = [float(a.sum() - b.sum()) for a, b in zip(after_actor, before_actor)]
    assert gain[0] - gain[1] > 1.0, gain

    # the engine still has the old weights until OpenRLHF's broadcast_to_vllm
    assert all(torch.equal(engine_logprobs(engine, r, start), b) for r, b in zip(rows, before_engine))
    ray.get(groups.actor.async_run_method("broadcast_to_vllm"))
    for r, b, a in zip(rows, before_engine, after_actor):
        synced = engine_logprobs(engine, r, start)
        assert torch.allclose(synced, a, atol=TOL), (synced - a).abs().max()
        assert float((synced - b).abs().max()) > 10 * TOL
