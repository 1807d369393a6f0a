"""The advantage hook on real OpenRLHF ``Experience`` objects.

Batches are made the way OpenRLHF 0.11.2 hands them to ``compute_advantages_and_returns``: the
step's rollouts (``n`` per prompt, consecutive) cut into micro-batches, each right-padded to its own
longest response, with ``Experience.index`` holding each rollout's position in the step. The
micro-batches here are built from a shuffled order, so the hook must undo it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from rlbench_med.algorithms import AdvantageInputs, make_estimator
from rlbench_med.runners.openrlhf.data import PromptLabel
from rlbench_med.runners.openrlhf.hook import (
    BASELINE_INFO_KEY,
    HookError,
    HookSettings,
    apply_estimator,
    experiences_to_inputs,
)
from tests.runners.openrlhf.conftest import DOMAINS, make_samples

N = 4  # rollouts per prompt


@dataclass
class Truth:
    """The step's rollouts in rollout order (what the experiences were cut from)."""

    rewards: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T] float
    old: torch.Tensor  # [B, T]
    ref: torch.Tensor  # [B, T]
    values: torch.Tensor  # [B, T]
    kl: torch.Tensor  # [B, T]
    baseline: torch.Tensor  # [B]
    domains: torch.Tensor  # [B]


def make_batch(cls: type, root: Path, *, prompts: int = 6, t: int = 12, micro: int = 5, seed: int = 0,
               ties: bool = True) -> tuple[list, Truth]:
    """Experiences laid out by OpenRLHF's own code: each rollout through
    ``SamplesGenerator._process_response_into_experience`` (prompt tokens, then the response), then
    each micro-batch through ``Experience.concat_experiences`` (right padding); the token fields
    (log probs, values, KL) are then set on the response columns of that layout."""
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    g = torch.Generator().manual_seed(seed)
    samples = make_samples(root, prompts, seed)
    b = prompts * N
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    rewards = torch.rand(b, generator=g)
    if ties:  # one group with identical rewards, one with two distinct values
        rewards[:N] = 0.5
        rewards[N : 2 * N] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    old = -torch.rand(b, t, generator=g) * 3
    ref = old + 0.2 * torch.randn(b, t, generator=g)
    values = torch.randn(b, t, generator=g)
    kl = (old - ref) * mask
    baseline = torch.rand(prompts, generator=g).repeat_interleave(N)
    labels = [PromptLabel.from_sample(s).to_json() for s in samples for _ in range(N)]
    texts = [f"<prompt {s.uid}>" for s in samples for _ in range(N)]
    prompt_ids = [torch.randint(5, 50, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
                  for _ in samples]
    domains = torch.tensor([DOMAINS.index(s.domain) for s in samples for _ in range(N)])
    order = torch.randperm(b, generator=g).tolist()
    exps = []
    for start in range(0, b, micro):
        rows = order[start : start + micro]
        singles = []
        for i in rows:
            response = torch.randint(5, 50, (int(lengths[i]),), generator=g).tolist()
            p = prompt_ids[i // N]
            singles.append(SamplesGenerator._process_response_into_experience(  # self is unused there
                None, {"observation_tokens": p + response, "action_ranges": [(len(p), len(p) + len(response))],
                       "reward": float(rewards[i]), "rollout_log_probs": None, "prompt": texts[i],
                       "label": labels[i]}, max_len=1024))
        exp = cls.concat_experiences(singles, 0)
        r = torch.tensor(rows)
        exp.index = list(rows)
        exp.action_log_probs = on_responses(old[r], exp.action_mask)
        exp.base_action_log_probs = on_responses(ref[r], exp.action_mask)
        exp.values = on_responses(values[r], exp.action_mask)
        exp.kl = on_responses(kl[r], exp.action_mask)
        exp.info[BASELINE_INFO_KEY] = baseline[r].clone()
        exps.append(exp)
    return exps, Truth(rewards, mask, old, ref, values, kl, baseline, domains)


def on_responses(aligned: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """``[B_e, T]`` left-aligned values -> ``[B_e, A_e]`` with them on each row's response columns."""
    out = torch.zeros(action_mask.shape)
    for j in range(action_mask.shape[0]):
        columns = action_mask[j].nonzero()[:, 0]
        out[j, columns] = aligned[j, : len(columns)]
    return out


def settings(**kw: object) -> HookSettings:
    return HookSettings(n_samples_per_prompt=N, domain_names=DOMAINS, **kw)  # type: ignore[arg-type]


def gather(exps: list, field: str, t: int) -> torch.Tensor:
    """``[B, T]`` of an experience field on the responses, left-aligned, back in rollout order."""
    b = sum(len(e.index) for e in exps)
    out = torch.zeros(b, t)
    for e in exps:
        for j, row in enumerate(e.index):
            values = getattr(e, field)[j][e.action_mask[j].bool()]
            out[row, : len(values)] = values
    return out


# ---------------------------------------------------------------------------------------------
# the hook gives exactly the registry's advantages
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp", "drpo"])
def test_hook_gives_the_registry_estimators_advantages_exactly(experience_cls, tmp_path, name):
    exps, truth = make_batch(experience_cls, tmp_path)
    metrics = apply_estimator(exps, make_estimator(name), settings())

    expected = make_estimator(name)(
        AdvantageInputs(
            rewards=truth.rewards,
            response_mask=truth.mask,
            group_ids=torch.arange(len(truth.rewards)) // N,
            domains=truth.domains,
            domain_names=DOMAINS,
            values=truth.values * truth.mask,
            baseline_rewards=truth.baseline,
            old_logprobs=truth.old * truth.mask,
            ref_logprobs=truth.ref * truth.mask,
        )
    )
    for e in exps:
        rows = torch.tensor(e.index)
        assert e.advantages.dtype == torch.float32 and e.advantages.shape == e.action_mask.shape
        assert torch.equal(e.advantages, on_responses(expected.advantages[rows].float(), e.action_mask))
        assert torch.equal(e.returns, on_responses(expected.returns[rows].float(), e.action_mask))
        assert e.kl is None
    assert metrics["train/reward_mean"] == pytest.approx(float(truth.rewards.double().mean()))
    assert set(k for k in metrics if k.startswith("adv/")) == {f"adv/{k}" for k in expected.diagnostics}
    assert metrics["time/advantage_s"] >= 0


def test_per_domain_reward_means_and_kl_use_the_local_runners_definitions(experience_cls, tmp_path):
    exps, truth = make_batch(experience_cls, tmp_path)
    metrics = apply_estimator(exps, make_estimator("grpo"), settings())
    for d, name in enumerate(DOMAINS):
        assert metrics[f"train/{name}/reward_mean"] == pytest.approx(float(truth.rewards[truth.domains == d].mean()))
    d = (truth.ref - truth.old) * truth.mask  # k3 = exp(ref - old) - (ref - old) - 1, as OpenRLHF and the local runner
    assert metrics["train/kl"] == pytest.approx(float(((d.exp() - d - 1) * truth.mask).sum() / truth.mask.sum()))


def test_rows_follow_rollout_order_whatever_the_micro_batch_split(experience_cls, tmp_path):
    a, _ = make_batch(experience_cls, tmp_path, micro=3, seed=5)
    b, _ = make_batch(experience_cls, tmp_path, micro=7, seed=5)
    ia, _ = experiences_to_inputs(a, settings())
    ib, _ = experiences_to_inputs(b, settings())
    assert torch.equal(ia.rewards, ib.rewards) and torch.equal(ia.response_mask, ib.response_mask)
    assert torch.equal(ia.old_logprobs, ib.old_logprobs) and torch.equal(ia.domains, ib.domains)
    assert ia.group_ids.tolist() == [i // N for i in range(len(ia.rewards))]


def test_remax_reads_the_greedy_baseline_from_info(experience_cls, tmp_path):
    exps, truth = make_batch(experience_cls, tmp_path)
    apply_estimator(exps, make_estimator("remax"), settings())
    t = truth.mask.shape[1]
    expected = (truth.rewards - truth.baseline)[:, None] * truth.mask
    assert torch.allclose(gather(exps, "advantages", t), expected, atol=1e-7)


def test_group_by_dataset_indexes_datasets(experience_cls, tmp_path):
    exps, truth = make_batch(experience_cls, tmp_path)
    names = tuple(f"{d.upper()}-DS" for d in DOMAINS)
    inputs, _ = experiences_to_inputs(exps, HookSettings(N, names, group_by="dataset"))
    assert torch.equal(inputs.domains, truth.domains)


def test_stateful_estimator_resumes_identically_from_its_state_dict(experience_cls, tmp_path):
    steps = [make_batch(experience_cls, tmp_path, seed=s)[0] for s in (1, 2)]
    again = [make_batch(experience_cls, tmp_path, seed=s)[0] for s in (1, 2)]
    continuous = make_estimator("drpo_release")
    for exps in steps:
        apply_estimator(exps, continuous, settings())
    first = make_estimator("drpo_release")
    apply_estimator(again[0], first, settings())
    path = tmp_path / "state.pt"
    torch.save(first.state_dict(), path)
    resumed = make_estimator("drpo_release")
    resumed.load_state_dict(torch.load(path, weights_only=True))
    apply_estimator(again[1], resumed, settings())
    for e, f in zip(steps[1], again[1]):
        assert torch.equal(e.advantages, f.advantages)


# ---------------------------------------------------------------------------------------------
# the hook equals OpenRLHF's own advantage step (RemoteExperienceMaker.compute_advantages_and_returns)
# ---------------------------------------------------------------------------------------------
def openrlhf_advantages(exps: list, estimator: str, kl_coef: float = 0.0) -> list:
    """Copies of ``exps`` through OpenRLHF 0.11.2's own ``compute_advantages_and_returns`` for ``estimator``.

    The method reads only ``strategy.args`` (OpenRLHF's flag defaults, from its parser's table),
    ``kl_ctl.value`` and ``advantage_estimator`` of the experience maker.
    """
    import copy
    from types import SimpleNamespace

    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    from rlbench_med.runners.openrlhf.guard import parse_flags

    args = parse_flags(["--rollout.n_samples_per_prompt", str(N), "--algo.advantage.estimator", estimator,
                        "--algo.kl.init_coef", str(kl_coef)])  # its reward clip (-10, 10) leaves [0, 1] alone
    maker = object.__new__(RemoteExperienceMaker)
    maker.strategy = SimpleNamespace(args=args)
    maker.kl_ctl = SimpleNamespace(value=kl_coef)
    maker.advantage_estimator = estimator
    return maker.compute_advantages_and_returns([copy.deepcopy(e) for e in exps])


def unit_scale(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` on the mask divided by its masked population std (removes a whitening convention)."""
    on = x[mask != 0].double()
    return on / on.pow(2).mean().sqrt()


@pytest.mark.parametrize(
    ("openrlhf_name", "ours", "whitened"),
    [("group_norm", "grpo:eps=1e-9", False), ("rloo", "rloo", False), ("reinforce_baseline", "reinforce_pp_baseline", True)],
)
def test_hook_matches_openrlhfs_own_advantage_step(experience_cls, tmp_path, openrlhf_name, ours, whitened):
    exps, truth = make_batch(experience_cls, tmp_path, seed=3)
    theirs = openrlhf_advantages(exps, openrlhf_name)
    apply_estimator(exps, make_estimator(ours), settings())
    on = truth.mask != 0
    # ours are zero off the responses; OpenRLHF's cumulative returns also fill the prompt columns (its
    # loss masks them), so the two are compared on the responses
    for e in exps:
        assert torch.count_nonzero(e.advantages[~e.action_mask.bool()]) == 0
    t = truth.mask.shape[1]
    got, want = gather(exps, "advantages", t), gather(theirs, "advantages", t)
    assert float(want[on].abs().max()) > 0
    if whitened:
        # Both whiten over the batch's response tokens; OpenRLHF divides by the population std,
        # the registry by the unbiased one, so compare at unit scale (and the exact centring).
        assert float(got[on].double().mean()) == pytest.approx(0.0, abs=1e-6)
        assert torch.allclose(unit_scale(got, truth.mask), unit_scale(want, truth.mask), atol=1e-5)
    else:
        assert torch.allclose(got[on], want[on], atol=1e-5)


def test_kl_in_reward_matches_openrlhfs_own_advantage_step(experience_cls, tmp_path):
    exps, truth = make_batch(experience_cls, tmp_path, seed=4)
    coef = 0.05
    theirs = openrlhf_advantages(exps, "reinforce", kl_coef=coef)
    inputs, _ = experiences_to_inputs(exps, settings(kl_mode="reward", kl_coef=coef))
    # OpenRLHF's returns are the cumulative shaped rewards (before whitening): their first token is the sum
    returns = gather(theirs, "returns", truth.mask.shape[1])
    assert torch.allclose(inputs.rewards, returns[:, 0], atol=1e-6)
    assert torch.allclose(inputs.rewards, truth.rewards - coef * (truth.kl * truth.mask).sum(1), atol=1e-6)

    apply_estimator(exps, make_estimator("reinforce_pp"), settings(kl_mode="reward", kl_coef=coef))
    got = gather(exps, "advantages", truth.mask.shape[1])
    want = gather(theirs, "advantages", truth.mask.shape[1])
    assert torch.allclose(unit_scale(got, truth.mask), unit_scale(want, truth.mask), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# errors name what is wrong and what to change
# ---------------------------------------------------------------------------------------------
def test_missing_reference_log_probs_says_how_to_get_them(experience_cls, tmp_path):
    exps, _ = make_batch(experience_cls, tmp_path)
    for e in exps:
        e.base_action_log_probs = None  # what OpenRLHF leaves without --algo.kl.use_loss
    with pytest.raises(HookError, match="kl_mode=loss"):
        apply_estimator(exps, make_estimator("drpo"), settings())
    apply_estimator(exps, make_estimator("drpo:kl_damping=false"), settings())


def test_missing_baseline_and_values_are_reported(experience_cls, tmp_path):
    exps, _ = make_batch(experience_cls, tmp_path)
    for e in exps:
        e.info.pop(BASELINE_INFO_KEY)
        e.values = None
    with pytest.raises(HookError, match="greedy baseline"):
        apply_estimator(exps, make_estimator("remax"), settings())
    with pytest.raises(HookError, match="critic"):
        apply_estimator(exps, make_estimator("ppo"), settings())


def test_groups_mixing_prompts_are_refused(experience_cls, tmp_path):
    exps, _ = make_batch(experience_cls, tmp_path)
    with pytest.raises(HookError, match="n_samples_per_prompt"):
        experiences_to_inputs(exps, HookSettings(n_samples_per_prompt=3, domain_names=DOMAINS))
    with pytest.raises(HookError, match="whole number"):
        experiences_to_inputs(exps, HookSettings(n_samples_per_prompt=5, domain_names=DOMAINS))


def test_bad_indices_and_unknown_domains_are_refused(experience_cls, tmp_path):
    exps, _ = make_batch(experience_cls, tmp_path)
    exps[0].index[0] = exps[1].index[0]
    with pytest.raises(HookError, match="permutation"):
        experiences_to_inputs(exps, settings())
    exps, _ = make_batch(experience_cls, tmp_path)
    with pytest.raises(HookError, match="'fundus' is not among"):
        experiences_to_inputs(exps, HookSettings(N, ("cxr", "dermoscopy")))
