"""What of the OpenRLHF runner can run on a GPU machine without vLLM, DeepSpeed, internet or weights.

Runs, on ``--device`` (default ``cuda``), and writes one JSON report (``--out``):

1. ``reward``: the OpenRLHF reward module (``reward_func``) on canonical answers of synthetic samples
   (labels, a box, a segmentation mask written to a temporary PNG), its rewards moved to the device,
   compared with the suite's ``RewardFunction`` on the same texts.
2. ``hook``: the advantage hook on ``Experience`` batches whose tensors live on the device (real
   ``openrlhf.trainer.ppo_utils.Experience`` when OpenRLHF is importable, else a stand-in with the
   same fields), for every estimator, compared with the same hook on CPU tensors.
3. ``step``: a tiny causal LM from a random ``transformers`` config, saved to a temporary folder and
   loaded back, then ``--steps`` RL steps of the OpenRLHF runner's shape: sampled rollouts (half of
   each group replaced by canonical answers, so rewards differ), actor and reference log probs,
   rewards from ``reward_func``, the hook with the chosen estimator, PPO's clipped policy loss
   (OpenRLHF's token-mean form) + k3 KL loss, backward, AdamW step.

Rollouts have OpenRLHF 0.11.2's layout (:func:`openrlhf_rollouts`): each row is prompt + response
tokens, right-padded in its micro-batch, with an ``action_mask`` ``[B, L - 1]`` that is zero on the
prompt, one on the response and zero on the padding; prompts differ in length, so responses start
at different columns. Log probs are taken as OpenRLHF's ``Actor.forward`` takes them
(:func:`action_logprobs`).

What cannot run without the ``openrlhf`` extra (vLLM generation, DeepSpeed ZeRO, Ray actors,
OpenRLHF's trainer) is listed under ``not_run``. Needs only torch, transformers, numpy and pillow
(plus this repository on ``PYTHONPATH``)::

    python benchmarks/openrlhf_gpu_check.py --device cuda --out benchmarks/results/openrlhf_gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rlbench_med.algorithms import list_estimators, make_estimator  # noqa: E402
from rlbench_med.runners.openrlhf.data import PromptLabel  # noqa: E402
from rlbench_med.runners.openrlhf.hook import BASELINE_INFO_KEY, HookSettings, apply_estimator  # noqa: E402
from rlbench_med.runners.openrlhf.reward import reward_func  # noqa: E402
from rlbench_med.suites.data import Sample  # noqa: E402
from rlbench_med.suites.rewards import Answer, RewardFunction, answer_to_text, parse_answer  # noqa: E402

DOMAINS = ("cxr", "dermoscopy", "fundus")
CLASSES = {"cxr": ("Normal", "Pneumonia", "Effusion"), "dermoscopy": ("Nevus", "Melanoma"), "fundus": ("DR", "No DR")}
#: Token ids of the tiny model's character codec (:class:`CharCodec`): padding, and EOS (the newline).
PAD, EOS = 0, 1
NOT_RUN = [
    "vLLM generation (rollouts, ReMax greedy baseline, greedy evaluation): this script does not need vLLM; "
    "rollouts here are sampled with transformers' generate",
    "DeepSpeed ZeRO and OpenRLHF's PolicyModelActor/ReferenceModelActor (they need DeepSpeed and flash-attn): "
    "the step here is plain PyTorch AdamW on one device",
    "Ray actors, placement groups and the rlbench trainer class (trainer.py needs openrlhf.trainer.ppo_trainer, which "
    "imports vLLM); launch.py was not run",
]


@dataclass
class StandInExperience:
    """The fields of OpenRLHF 0.11.2's ``Experience`` the hook reads and writes (used without OpenRLHF)."""

    sequences: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None
    action_log_probs: torch.Tensor | None = None
    base_action_log_probs: torch.Tensor | None = None
    rollout_log_probs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    index: list[int] | None = None
    prompts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def experience_class() -> tuple[type, str]:
    try:
        from openrlhf.trainer.ppo_utils import Experience
    except ImportError as exc:
        return StandInExperience, f"stand-in (openrlhf not importable: {exc})"
    return Experience, "openrlhf.trainer.ppo_utils.Experience"


def make_samples(root: Path, n: int, rng: random.Random) -> list[Sample]:
    """Synthetic samples over three domains; every third one has a mask, every third a box."""
    from PIL import Image

    samples = []
    for i in range(n):
        domain = DOMAINS[i % len(DOMAINS)]
        classes = CLASSES[domain]
        mask_path = None
        bbox = None
        if i % 3 == 1:
            mask = np.zeros((32, 48), dtype=np.uint8)
            mask[8:20, 10:30] = 255
            mask_path = root / f"mask{i}.png"
            Image.fromarray(mask).save(mask_path)
        elif i % 3 == 2:
            bbox = (4.0, 4.0, 20.0, 16.0)
        samples.append(Sample(
            uid=f"s{i}", problem="What is the diagnosis?", labels=(rng.choice(classes),), domain=domain,
            dataset=f"{domain}-set", task=f"{domain}-set", classes=classes, segmentation_path=mask_path, bbox=bbox,
            image_size=(48, 32) if (mask_path or bbox) else None,
        ))
    return samples


def prompt_of(sample: Sample) -> str:
    """The chat-templated prompt of ``sample``; its class list makes prompt lengths differ between samples."""
    return (f"<|im_start|>user\n{sample.problem}\nOptions: {', '.join(sample.classes)}.<|im_end|>\n"
            "<|im_start|>assistant\n")


def candidate_texts(sample: Sample, rng: random.Random, max_words: int = 40) -> list[str]:
    """Canonical answers of varying quality: right/wrong label, with/without a box, free text."""
    wrong = [c for c in sample.classes if c not in sample.labels]
    box = ((10.0, 8.0, 30.0, 20.0),) if rng.random() < 0.5 else ()
    reasoning = " ".join(["finding"] * rng.randint(0, max_words))
    return [
        answer_to_text(Answer(labels=sample.labels, boxes=box, reasoning=reasoning, reasoning_tokens=0)),
        answer_to_text(Answer(labels=(wrong[0],), reasoning=reasoning)),
        "I am not sure.",
    ]


def check_reward(samples: list[Sample], device: torch.device, rng: random.Random) -> dict[str, Any]:
    queries, prompts, labels, expected = [], [], [], []
    local = RewardFunction("paper")
    for s in samples:
        for text in candidate_texts(s, rng):
            queries.append(prompt_of(s) + text + "<|im_end|>")
            prompts.append(prompt_of(s))
            labels.append(PromptLabel.from_sample(s).to_json())
            expected.append(local.score(s, parse_answer(text)).total)
    start = time.perf_counter()
    out = reward_func(queries, prompts, labels)
    elapsed = time.perf_counter() - start
    rewards = out["rewards"].to(device)
    diff = float((rewards.cpu().double() - torch.tensor(expected, dtype=torch.float64)).abs().max())
    return {
        "ok": diff < 1e-6,
        "n": len(queries),
        "device": str(rewards.device),
        "max_abs_diff_vs_local_reward": diff,
        "reward_mean": float(rewards.mean()),
        "seconds": elapsed,
        "extra_logs": sorted(out["extra_logs"]),
    }


def openrlhf_rollouts(prompts: list[list[int]], responses: list[list[int]],
                      pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sequences [B, L], attention_mask [B, L], action_mask [B, L - 1])`` laid out as OpenRLHF 0.11.2 does.

    Per rollout as ``SamplesGenerator._process_response_into_experience``: the observation is the
    prompt's then the response's tokens, the attention mask is all ones, the action mask is one on
    the response's tokens and is then shifted by one (``action_mask[c]``: token ``c + 1`` was
    generated), so it is zero on the prompt. Rows are then merged as ``Experience.concat_experiences``
    merges them: right-padded to the longest, ``sequences`` with ``pad_token_id``, the masks with 0.
    (OpenRLHF also cuts rows at ``max_len``; the rollouts here are shorter.)
    """
    rows = [list(p) + list(r) for p, r in zip(prompts, responses)]
    width = max(len(row) for row in rows)
    sequences = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    action = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        sequences[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        action[i, len(prompt) : len(row)] = 1
    return sequences, attention, action[:, 1:]


def action_logprobs(model: Any, sequences: torch.Tensor, attention_mask: torch.Tensor,
                    action_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L - 1]`` log prob of token ``c + 1`` at column ``c``, zero off the action mask.

    As OpenRLHF 0.11.2's ``Actor.forward`` (text model, no packing): positions count the attended
    tokens, logits in float32, the log prob of each next token, multiplied by the action mask.
    """
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    logits = model(sequences, attention_mask=attention_mask, position_ids=position_ids).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, sequences[:, 1:, None]).squeeze(-1)
    return logp * action_mask.float()


def make_experiences(cls: type, samples: list[Sample], n: int, t: int, device: torch.device, seed: int,
                     micro: int) -> list[Any]:
    """Random rollouts of ``len(samples)`` prompts x ``n`` in OpenRLHF's layout, micro-batches in shuffled order.

    Prompts are 3 to 20 tokens, responses 1 to ``t``; token fields are zero off the action mask,
    as OpenRLHF's models return them.
    """
    g = torch.Generator().manual_seed(seed)
    total = len(samples) * n
    prompt_ids = [torch.randint(2, 90, (int(torch.randint(3, 21, (1,), generator=g)),), generator=g).tolist()
                  for _ in samples]
    lengths = torch.randint(1, t + 1, (total,), generator=g)
    response_ids = [torch.randint(2, 90, (int(k),), generator=g).tolist() for k in lengths]
    rewards = torch.rand(total, generator=g).round(decimals=1)
    greedy = torch.rand(len(samples), generator=g).repeat_interleave(n)
    labels = [PromptLabel.from_sample(s).to_json() for s in samples for _ in range(n)]
    prompts = [f"prompt {s.uid}" for s in samples for _ in range(n)]
    order = torch.randperm(total, generator=g).tolist()
    exps = []
    for start in range(0, total, micro):
        rows = order[start : start + micro]
        r = torch.tensor(rows)
        sequences, attention, action = openrlhf_rollouts([prompt_ids[i // n] for i in rows],
                                                         [response_ids[i] for i in rows], 0)
        on = action.float()
        old = -torch.rand(on.shape, generator=g) * 2 * on
        exp = cls(
            sequences=sequences.to(device),
            attention_mask=attention.to(device),
            action_mask=action.to(device),
            action_log_probs=old.to(device),
            base_action_log_probs=((old + 0.1 * torch.randn(on.shape, generator=g)) * on).to(device),
            values=(torch.randn(on.shape, generator=g) * on).to(device),
            rewards=rewards[r].to(device),
            index=rows,
            prompts=[prompts[i] for i in rows],
            labels=[labels[i] for i in rows],
            info={BASELINE_INFO_KEY: greedy[r].to(device)},
        )
        exps.append(exp)
    return exps


def off_mask_zero(exps: list[Any]) -> bool:
    """Whether every experience's advantages are zero off its action mask (prompt and padding)."""
    return all(bool((e.advantages.cpu()[e.action_mask.cpu() == 0] == 0).all()) for e in exps)


def check_hook(samples: list[Sample], device: torch.device, cls: type) -> dict[str, Any]:
    settings = HookSettings(n_samples_per_prompt=4, domain_names=DOMAINS)
    report: dict[str, Any] = {}
    for name in list_estimators():
        entry: dict[str, Any] = {}
        try:
            cpu = make_experiences(cls, samples, 4, 24, torch.device("cpu"), 7, 5)
            dev = make_experiences(cls, samples, 4, 24, device, 7, 5)
            est_cpu, est_dev = make_estimator(name), make_estimator(name)
            apply_estimator(cpu, est_cpu, settings)
            start = time.perf_counter()
            metrics = apply_estimator(dev, est_dev, settings)
            if device.type == "cuda":
                torch.cuda.synchronize()
            entry["seconds"] = time.perf_counter() - start
            diffs = [float((d.advantages.cpu() - c.advantages).abs().max()) for d, c in zip(dev, cpu)]
            entry["advantage_device"] = str(dev[0].advantages.device)
            entry["max_abs_diff_vs_cpu"] = max(diffs)
            entry["advantages_off_mask_zero"] = off_mask_zero(dev)
            entry["ok"] = (entry["advantage_device"].startswith(device.type) and max(diffs) < 1e-5
                           and entry["advantages_off_mask_zero"])
            entry["diagnostics"] = sorted(k for k in metrics if k.startswith("adv/"))[:6]
        except Exception as exc:  # the report records any failure of an estimator on this device
            entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                     "where": traceback.extract_tb(exc.__traceback__)[-1].filename.split("rlbench_med/")[-1]}
        report[name] = entry
    return report


class CharCodec:
    """Character-level token ids (printable ASCII + newline) for the tiny model; id 0 is padding."""

    def __init__(self) -> None:
        self.chars = ["<pad>", "\n"] + [chr(c) for c in range(32, 127)]
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, self.index["?"]) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids if i > 0)


def run_step(samples: list[Sample], device: torch.device, cls: type, estimator_name: str, steps: int,
             seed: int, advantage_device: torch.device) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(seed)
    codec = CharCodec()
    config = Qwen2Config(vocab_size=len(codec.chars), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS, tie_word_embeddings=True)
    with tempfile.TemporaryDirectory() as tmp:
        AutoModelForCausalLM.from_config(config).save_pretrained(tmp)
        actor = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(device)
        ref = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(device).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(actor.parameters(), lr=1e-3)
    estimator = make_estimator(estimator_name)
    n, resp_len, micro, clip_low, clip_high, kl_coef = 4, 160, 8, 0.2, 0.28, 1e-3
    settings = HookSettings(n_samples_per_prompt=n, domain_names=DOMAINS)
    rng = random.Random(seed)
    history = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps):
        t0 = time.perf_counter()
        batch = samples[:6]
        prompt_texts = [prompt_of(s) for s in batch for _ in range(n)]
        prompt_ids = [codec.encode(text) for text in prompt_texts]
        responses: list[list[int]] = []
        with torch.no_grad():
            for g, sample in enumerate(batch):
                ids = torch.tensor(prompt_ids[g * n], device=device)[None].repeat(n, 1)
                # min = max new tokens: sampled rollouts run to the limit (vLLM's finish_reason "length")
                out = actor.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=resp_len,
                                     min_new_tokens=resp_len, pad_token_id=PAD)
                sampled = out[:, ids.shape[1] :].tolist()
                # Half of each group answers canonically (right or wrong label, ended by EOS), so rewards differ.
                for j in range(n):
                    if j < n // 2:
                        text = candidate_texts(sample, rng, max_words=8)[j % 2]
                        responses.append(codec.encode(text)[: resp_len - 1] + [EOS])
                    else:
                        responses.append(sampled[j])
        texts = [codec.decode(r) for r in responses]
        labels = [PromptLabel.from_sample(s).to_json() for s in batch for _ in range(n)]
        t_gen = time.perf_counter()
        out = reward_func([p + t for p, t in zip(prompt_texts, texts)], prompt_texts, labels)
        rewards = out["rewards"].to(device)
        t_rew = time.perf_counter()
        # Micro-batches in shuffled order, each in OpenRLHF's layout; log probs per micro-batch as its
        # experience maker takes them.
        order = list(range(len(texts)))
        rng.shuffle(order)
        exps = []
        for start in range(0, len(order), micro):
            rows = order[start : start + micro]
            sequences, attention, action = (x.to(device) for x in openrlhf_rollouts(
                [prompt_ids[i] for i in rows], [responses[i] for i in rows], PAD))
            with torch.no_grad():
                old = action_logprobs(actor, sequences, attention, action)
                base = action_logprobs(ref, sequences, attention, action)
            r = torch.tensor(rows, device=device)
            exps.append(cls(sequences=sequences, attention_mask=attention, action_mask=action.to(advantage_device),
                            action_log_probs=old.to(advantage_device), base_action_log_probs=base.to(advantage_device),
                            rewards=rewards[r].to(advantage_device), index=rows,
                            prompts=[prompt_texts[i] for i in rows], labels=[labels[i] for i in rows]))
        t_lp = time.perf_counter()
        metrics = apply_estimator(exps, estimator, settings)
        adv_device = str(exps[0].advantages.device)
        off_mask = off_mask_zero(exps)
        for exp in exps:  # as OpenRLHF's actors do: the experience goes to the training device
            for name in ("action_mask", "action_log_probs", "base_action_log_probs", "advantages"):
                setattr(exp, name, getattr(exp, name).to(device))
        t_adv = time.perf_counter()
        actor.train()
        optimizer.zero_grad(set_to_none=True)
        total_tokens = sum(float(exp.action_mask.sum()) for exp in exps)  # token mean over the whole step
        losses = []
        for exp in exps:
            logp = action_logprobs(actor, exp.sequences, exp.attention_mask, exp.action_mask)
            mask = exp.action_mask.float()
            ratio = (logp - exp.action_log_probs).exp()
            surr1 = ratio * exp.advantages
            surr2 = ratio.clamp(1 - clip_low, 1 + clip_high) * exp.advantages
            policy = -torch.min(surr1, surr2)
            log_ratio = (exp.base_action_log_probs - logp).clamp(min=-10)
            kl = (log_ratio.exp() - 1 - log_ratio).clamp(-10, 10)  # k3, as OpenRLHF's compute_approx_kl
            per_token = policy + kl_coef * kl
            loss = (per_token * mask).sum() / total_tokens
            loss.backward()
            losses.append(float(loss.detach()))
        before = [p.detach().clone() for p in actor.parameters()]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(actor.parameters(), 1.0))
        optimizer.step()
        changed = sum(int(not torch.equal(b, p.detach())) for b, p in zip(before, actor.parameters()))
        actor.eval()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_end = time.perf_counter()
        history.append({
            "step": step + 1,
            "rollouts": len(texts),
            "prompt_tokens": sorted({len(p) for p in prompt_ids}),
            "reward_mean": float(rewards.mean()),
            "advantage_abs_mean": float(torch.cat([e.advantages[e.action_mask != 0].abs() for e in exps]).mean()),
            "advantages_off_mask_zero": off_mask,
            "advantage_device": adv_device,
            "loss": sum(losses),
            "loss_finite": all(np.isfinite(losses)),
            "grad_norm": grad_norm,
            "params_changed": changed,
            "params_total": len(before),
            "adv_metrics": sorted(k for k in metrics if k.startswith(("adv/", "train/", "time/")))[:8],
            "seconds": {"generate": t_gen - t0, "reward": t_rew - t_gen, "logprobs": t_lp - t_rew,
                        "advantage": t_adv - t_lp, "update": t_end - t_adv, "total": t_end - t0},
        })
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    ok = all(h["loss_finite"] and h["params_changed"] > 0 and h["advantages_off_mask_zero"]
             and h["advantage_device"].startswith(advantage_device.type) for h in history)
    return {"ok": ok, "estimator": estimator_name, "model": "Qwen2Config 2x64, random init, saved and reloaded",
            "advantage_device": str(advantage_device),
            "steps": history, "peak_memory_mib": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--steps", type=int, default=2, help="RL steps of the tiny model")
    parser.add_argument("--estimator", default="drpo", help="estimator spec of the tiny-model step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--advantage-device", default="cpu",
                        help="where the step's advantage hook runs: cpu (as in OpenRLHF, whose experience maker holds "
                        "CPU tensors) or the --device")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "openrlhf_gpu_check.json")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU; use --device cpu to check the script itself")
    device = torch.device(args.device)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    cls, cls_name = experience_class()
    import transformers

    report: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "experience_class": cls_name,
    }
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        samples = make_samples(Path(tmp), 12, rng)
        sections = {
            "reward": lambda: check_reward(samples, device, rng),
            "hook": lambda: check_hook(samples, device, cls),
            "step": lambda: run_step(samples, device, cls, args.estimator, args.steps, args.seed,
                                     torch.device(args.advantage_device)),
        }
        for key, fn in sections.items():
            start = time.perf_counter()
            try:
                report[key] = fn()
            except Exception as exc:  # the report says which section failed and why
                report[key] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            print(f"{key}: {'ok' if _ok(report[key]) else 'FAILED'} ({time.perf_counter() - start:.1f} s)", flush=True)
    report["not_run"] = NOT_RUN
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: (_ok(v) if isinstance(v, dict) else v) for k, v in report.items() if k != "not_run"}, indent=2))
    print(f"wrote {args.out}")
    return 0


def _ok(section: Any) -> bool:
    if isinstance(section, dict) and "ok" in section:
        return bool(section["ok"])
    if isinstance(section, dict):
        return all(_ok(v) for v in section.values())
    return True


if __name__ == "__main__":
    sys.exit(main())
