"""DRPO and its presets: hand-worked cases, invariants, the sklearn reference, history state."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from rlbench_med.algorithms import AdvantageInputs, make_estimator
from rlbench_med.algorithms.drpo import linear_quantile
from rlbench_med.algorithms.kmeans import (
    MAX_ITER,
    N_CANDIDATES,
    _elbow_kmeans_loops,
    elbow_k,
    sklearn_elbow_kmeans,
    unique_rows,
    weighted_kmeans_elbow,
)
from tests.algorithms.helpers import batch, full_inputs, random_batch

EPS = 1e-6
A_HAT = 0.5 / (math.sqrt(0.5) + EPS)  # GRPO advantage of the rollouts of a [1, 0] question

# Domain a: q0 = [1, 0], q1 = [1, 0], q2 = [0, 0]; domain b: q3 = [1, 0].
HAND = dict(groups=[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], domains=[0, 0, 0, 1], domain_names=("a", "b"))


def per_rollout(out: torch.Tensor) -> list[float]:
    return out[:, 0].tolist()


def test_drpo_hand_worked_with_clusters() -> None:
    # T_a = sqrt(3) * (2 / 6) = 0.5773503, T_b = sqrt(1) * 0.5 = 0.5.
    # Domain a has 2 distinct vectors -> K_cap = 2 -> k = 2: {q0, q1} (N_c = 2, mu_c = 0.5,
    # T_c = sqrt(2) * 0.5 = 0.7071068) and {q2} (mu_c = 0, T_c = eps; its A^ is 0). Domain b: k = 1, T_c = 0.5.
    # s_a = A^ / (0.5773503 * 0.7071068) = 1.7320484, s_b = A^ / (0.5 * 0.5) = 2.8284231
    # batch std of s (8 rollouts, mean 0): sqrt((4 * 1.7320484^2 + 2 * 2.8284231^2) / 7) = 1.9999972
    out = make_estimator("drpo_nokl")(batch(**HAND))
    a, b = 0.8660250, 1.4142129
    assert per_rollout(out.advantages) == pytest.approx([a, -a, a, -a, 0.0, 0.0, b, -b], abs=1e-6)
    d = out.diagnostics
    assert (d["drpo/a/k"], d["drpo/b/k"]) == (2.0, 1.0)
    assert d["drpo/a/T_g"] == pytest.approx(math.sqrt(3) / 3)
    assert d["drpo/b/T_g"] == pytest.approx(0.5)
    assert d["drpo/a/scale"] == pytest.approx(a / A_HAT, rel=1e-6)
    assert d["drpo/b/scale"] == pytest.approx(b / A_HAT, rel=1e-6)


def test_drpo_hand_worked_k_max_one() -> None:
    # k = 1: T_c = T_g, so s = A^ / T_g^2: s_a = A^ * 3 = 2.1213173, s_b = A^ * 4 = 2.8284231,
    # std sqrt((4 * 2.1213173^2 + 2 * 2.8284231^2) / 7) = 2.2038895
    out = make_estimator("drpo_nokl:k_max=1")(batch(**HAND))
    a, b = 0.9625330, 1.2833773
    assert per_rollout(out.advantages) == pytest.approx([a, -a, a, -a, 0.0, 0.0, b, -b], abs=1e-6)


def test_drpo_domain_only_uses_the_domain_temperature_alone() -> None:
    # T_c = 1: s_a = A^ / 0.5773503 = 1.2247427, s_b = A^ / 0.5 = 1.4142116
    out = make_estimator("drpo_domain_only")(batch(**HAND))
    s_a, s_b = A_HAT / (math.sqrt(3) / 3), A_HAT / 0.5
    std = math.sqrt((4 * s_a**2 + 2 * s_b**2) / 7)
    a, b = s_a / (std + EPS), s_b / (std + EPS)
    assert per_rollout(out.advantages) == pytest.approx([a, -a, a, -a, 0.0, 0.0, b, -b], abs=1e-6)
    assert not any(key.endswith("/k") for key in out.diagnostics)


def test_kl_damping_matches_the_formula_step_by_step() -> None:
    # One token per rollout; ref - old = d gives k3 = e^d - d - 1.
    diffs = [0.0, 0.5, -0.3, 1.0, 0.0, 2.0, 0.1, -0.2]
    old = torch.zeros(8, 1)
    inputs = batch(HAND["groups"], domains=HAND["domains"], domain_names=HAND["domain_names"], t_len=1,
                   old_logprobs=old, ref_logprobs=old + torch.tensor(diffs).reshape(8, 1))
    out = make_estimator("drpo:kmeans=fast")(inputs)
    s = np.array([1.7320484, -1.7320484, 1.7320484, -1.7320484, 0.0, 0.0, 2.8284231, -2.8284231])
    kl = np.array([math.exp(d) - d - 1 for d in diffs])
    z = np.abs(s) * kl
    tau = max(float(np.quantile(z, 0.75)), EPS)  # linear interpolation, as torch.quantile
    s = s * tau / (z + tau)
    expected = s / (s.std(ddof=1) + EPS)
    assert per_rollout(out.advantages) == pytest.approx(expected.tolist(), abs=1e-5)
    assert out.diagnostics["drpo/kl_tau"] == pytest.approx(tau, rel=1e-5)


def test_linear_quantile_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 7, 100, 2560):
        for values in (rng.random(size), np.round(rng.normal(size=size), 1), np.zeros(size)):
            for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, float(rng.random())):
                assert linear_quantile(values, q) == float(np.quantile(values, q))


@pytest.mark.parametrize(
    "rows",
    [
        {0: [0.5, -0.3], 3: [1.0, 0.2], 6: [-0.4, 0.0]},  # every token below the clamp
        {0: [3.0, 3.0], 3: [0.5, 0.0]},  # k3(3) = e^3 - 4 = 16.09 on both tokens: row 0 sums to 20, not 10 or 32.2
    ],
)
def test_kl_damping_clamps_each_token(rows: dict[int, list[float]]) -> None:
    diffs = torch.zeros(8, 2)
    for i, row in rows.items():
        diffs[i] = torch.tensor(row)
    old = torch.zeros(8, 2)
    inputs = batch(HAND["groups"], domains=HAND["domains"], domain_names=HAND["domain_names"], t_len=2,
                   old_logprobs=old, ref_logprobs=old + diffs)
    out = make_estimator("drpo:kl_clamp=10")(inputs)
    s = np.array([1.7320484, -1.7320484, 1.7320484, -1.7320484, 0.0, 0.0, 2.8284231, -2.8284231])
    kl = np.array([sum(min(math.exp(d) - d - 1, 10.0) for d in row) for row in diffs.tolist()])
    z = np.abs(s) * kl
    tau = max(float(np.quantile(z, 0.75)), EPS)
    s = s * tau / (z + tau)
    assert per_rollout(out.advantages) == pytest.approx((s / (s.std(ddof=1) + EPS)).tolist(), abs=1e-5)


def test_one_domain_and_k_max_one_equals_grpo_up_to_one_global_scale() -> None:
    inputs = random_batch(prompts=12, n=4, n_domains=1, t_len=5, seed=3)
    grpo = make_estimator("grpo")(inputs).advantages.double()
    drpo = make_estimator("drpo_nokl:k_max=1")(inputs).advantages.double()
    nonzero = grpo.abs() > 1e-6
    ratio = drpo[nonzero] / grpo[nonzero]
    assert float(ratio.std()) < 1e-6 * float(ratio.mean().abs())
    assert torch.all(drpo[~nonzero].abs() < 1e-6)


def _two_domain_batch(
    rare_questions: int, common_questions: int, rare_pattern: list[float], common_pattern: list[float]
) -> AdvantageInputs:
    groups = [rare_pattern] * rare_questions + [common_pattern] * common_questions
    domains = [0] * rare_questions + [1] * common_questions
    return batch(groups, domains=domains, domain_names=("rare", "common"))


@pytest.mark.parametrize("spec", ["drpo_nokl", "drpo_domain_only", "drpo_nokl:k_max=1"])
def test_rarer_domain_gets_a_larger_scale(spec: str) -> None:
    out = make_estimator(spec)(_two_domain_batch(2, 10, [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]))
    assert out.diagnostics["drpo/rare/scale"] > out.diagnostics["drpo/common/scale"]


@pytest.mark.parametrize("spec", ["drpo_nokl", "drpo_domain_only", "drpo_nokl:k_max=1"])
def test_lower_reward_domain_gets_a_larger_scale(spec: str) -> None:
    out = make_estimator(spec)(_two_domain_batch(5, 5, [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]))
    assert out.diagnostics["drpo/rare/scale"] > out.diagnostics["drpo/common/scale"]


def _separated_cluster_batch(seed: int) -> AdvantageInputs:
    """Reward vectors around a few distinct patterns (noise 0.02), several domains."""
    rng = np.random.default_rng(seed)
    patterns = np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1]], dtype=float)
    groups, domains = [], []
    for d in range(3):
        k = rng.integers(2, 6)
        for p in rng.permutation(5)[:k]:
            for _ in range(rng.integers(4, 12)):
                groups.append((patterns[p] + 0.02 * rng.standard_normal(5)).tolist())
                domains.append(d)
    return batch(groups, domains=domains, domain_names=("x", "y", "z"), t_len=2)


@pytest.mark.parametrize("seed", range(6))
def test_same_k_and_clusters_as_the_sklearn_reference_on_separated_clusters(seed: int) -> None:
    inputs = _separated_cluster_batch(seed)
    fast = make_estimator("drpo_nokl")(inputs)
    ref = make_estimator("drpo_nokl:kmeans=sklearn")(inputs)
    for name in ("x", "y", "z"):
        assert fast.diagnostics[f"drpo/{name}/k"] == ref.diagnostics[f"drpo/{name}/k"]
    # same k and same partition give the same temperatures, so the same advantages
    torch.testing.assert_close(fast.advantages, ref.advantages, atol=1e-5, rtol=1e-5)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("true_k", [2, 3, 4, 5])
def test_kmeans_finds_the_reference_partition_of_separated_blobs(true_k: int) -> None:
    rng = np.random.default_rng(true_k)
    centres = np.eye(5)[:true_k] * 4.0
    points = np.concatenate([c + 0.05 * rng.standard_normal((12, 5)) for c in centres])
    ref_labels, ref_k, _ = sklearn_elbow_kmeans(points, 10, 0.1)
    fit = weighted_kmeans_elbow(points, np.ones(len(points)), np.zeros(len(points), dtype=np.int64), 1, 10, 0.1)
    assert ref_k == int(fit.k[0]) == true_k
    assert _same_partition(fit.labels, ref_labels)


def test_weighted_points_give_the_inertia_of_their_repeats() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    weights = np.array([3.0, 1.0, 2.0])
    fit = weighted_kmeans_elbow(points, weights, np.zeros(3, dtype=np.int64), 1, 3, 0.1)
    repeated = np.repeat(points, [3, 1, 2], axis=0)
    assert fit.inertia[0, 0] == pytest.approx(((repeated - repeated.mean(0)) ** 2).sum())
    # k = 2: {0, 0, 0, 1} around 0.25 -> 3 * 0.0625 + 0.5625 = 0.75; {5, 5} exact
    assert fit.inertia[0, 1] == pytest.approx(0.75)
    assert fit.inertia[0, 2] == pytest.approx(0.0)


def _random_domains(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Distinct weighted points of 4 domains (one of them empty), grouped by domain."""
    rng = np.random.default_rng(seed)
    points, weights, slots = [], [], []
    for d, size in enumerate([int(rng.integers(1, 40)), 0, int(rng.integers(1, 6)), int(rng.integers(10, 60))]):
        raw = rng.choice([0.0, 0.2, 0.8, 1.0], size=(size, 4)) if seed % 2 else rng.random((size, 4))
        uniq, inverse = unique_rows(raw)
        points.append(uniq)
        weights.append(np.bincount(inverse, minlength=len(uniq)).astype(np.float64))
        slots.append(np.full(len(uniq), d))
    return np.concatenate(points), np.concatenate(weights), np.concatenate(slots).astype(np.int64), 4


@pytest.mark.parametrize(("tol", "elbows_expected"), [(0.1, False), (0.5, True)])
def test_kmeans_labels_inertia_and_elbow_are_consistent(tol: float, elbows_expected: bool) -> None:
    elbows_before_the_cap = 0
    for seed in range(8):
        points, weights, slot, n_dom = _random_domains(seed)
        fit = weighted_kmeans_elbow(points, weights, slot, n_dom, 10, tol)
        # the early stop picks the k that the elbow rule picks on the inertias it computed
        assert fit.k.tolist() == elbow_k(fit.inertia, fit.k_cap, tol).tolist()
        elbows_before_the_cap += int((fit.k < fit.k_cap).sum())
        for d in range(n_dom):
            mine = slot == d
            if not mine.any():
                assert fit.k[d] == 1
                continue
            x, w, lab = points[mine], weights[mine], fit.labels[mine]
            k = int(fit.k[d])
            assert lab.min() >= 0 and lab.max() < k
            # converged Lloyd: the centres are the weighted cluster means, so I(k) is recomputable
            inertia = sum(
                float((w[lab == c] * ((x[lab == c] - np.average(x[lab == c], axis=0, weights=w[lab == c])) ** 2).sum(1)).sum())
                for c in np.unique(lab)
            )
            assert inertia == pytest.approx(fit.inertia[d, k - 1], rel=1e-9, abs=1e-12)
            # inertia never rises with k, and a domain alone gives the same result
            curve = fit.inertia[d][~np.isnan(fit.inertia[d])]
            assert (np.diff(curve) <= 1e-12).all()
            alone = weighted_kmeans_elbow(x, w, np.zeros(len(x), dtype=np.int64), 1, 10, tol)
            assert alone.k[0] == k and alone.labels.tolist() == lab.tolist()
    if elbows_expected:  # a loose tolerance stops before K_cap: the elbow branch was exercised
        assert elbows_before_the_cap > 0


def test_compiled_kmeans_matches_its_python_loops() -> None:
    points, weights, slot, n_dom = _random_domains(3)
    fit = weighted_kmeans_elbow(points, weights, slot, n_dom, 10, 0.1)
    labels, chosen = np.zeros(len(points), dtype=np.int64), np.ones(n_dom, dtype=np.int64)
    inertia = np.full_like(fit.inertia, np.nan)
    starts = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=n_dom))]).astype(np.int64)
    _elbow_kmeans_loops(points, weights, starts, 10, 0.1, N_CANDIDATES, MAX_ITER, labels, chosen, inertia)
    assert labels.tolist() == fit.labels.tolist() and chosen.tolist() == fit.k.tolist()
    np.testing.assert_array_equal(inertia, fit.inertia)


def test_elbow_rule() -> None:
    # I = [100, 40, 5, 4.9, 4.8]: d = [60, 35, 0.1, 0.1]; k = 2: 35 < 6? no; k = 3: 0.1 < 3.5 -> 3
    assert elbow_k(np.array([[100, 40, 5, 4.9, 4.8]]), np.array([5]), 0.1).tolist() == [3]
    # no drop small enough -> K_cap
    assert elbow_k(np.array([[100, 50, 25, 12]]), np.array([4]), 0.1).tolist() == [4]
    # K_cap = 2 has no d_2 -> 2; K_cap = 1 -> 1
    assert elbow_k(np.array([[10, 0, 0]]), np.array([2]), 0.1).tolist() == [2]
    assert elbow_k(np.array([[10, 0, 0]]), np.array([1]), 0.1).tolist() == [1]


# -- drpo_release ---------------------------------------------------------------------------


def test_release_accumulates_history_and_uses_the_harmonic_domain_mean() -> None:
    est = make_estimator("drpo_release")
    first = batch([[1.0, 0.0], [1.0, 1.0]], domain_names=("a",))
    est(first)
    second = batch([[1.0, 0.0]], domain_names=("a",))
    out = est(second)
    # history of a: [1, 0] x 2, [1, 1] x 1 -> 2 distinct vectors, k = 2:
    # cluster {[1,0] x 2}: N = 2, mu = 0.5 ; cluster {[1,1]}: N = 1, mu = 1
    # mu_g = (0.5 / 2 + 1 / 1) / (1 / 2 + 1) = 0.8333333 ; N_g = 3 ; T_g = sqrt(3) * 0.8333333
    assert out.diagnostics["drpo/a/k"] == 2.0
    assert out.diagnostics["drpo/a/T_g"] == pytest.approx(math.sqrt(3) * 1.25 / 1.5)
    # one question in the batch: s = +-A^ / (T_g T_c), std over 2 rollouts = |s| * sqrt(2)
    expected = 1 / math.sqrt(2) * (1 / (1 + EPS / (A_HAT / (math.sqrt(3) * 1.25 / 1.5 * math.sqrt(2) * 0.5) * math.sqrt(2))))
    assert per_rollout(out.advantages) == pytest.approx([expected, -expected], rel=1e-5)


def test_release_cluster_temperatures_come_from_the_history() -> None:
    est = make_estimator("drpo_release")
    est(batch([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], domain_names=("a",)))
    out = est(batch([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], domain_names=("a",)))
    # history: [1, 0, 0] x 3 (T_c = sqrt(3) / 3), [1, 1, 0] x 2 (T_c = sqrt(2) * 2 / 3); both questions
    # have |A^| = (2 / 3) / sqrt(1 / 3) on their lone rollout, and share T_g, so the ratio is T_c's
    a = per_rollout(out.advantages)
    assert out.diagnostics["drpo/a/k"] == 2.0
    assert a[0] / -a[5] == pytest.approx((math.sqrt(2) * 2 / 3) / (math.sqrt(3) / 3), rel=1e-5)


def test_release_state_survives_torch_save_and_weights_only_load() -> None:
    a = make_estimator("drpo_release")
    for seed in range(3):
        a(random_batch(prompts=10, n=3, n_domains=3, t_len=4, seed=seed))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_estimator("drpo_release")
    b.load_state_dict(torch.load(buffer, weights_only=True))
    nxt = random_batch(prompts=10, n=3, n_domains=3, t_len=4, seed=99)
    out_a, out_b = a(nxt), b(nxt)
    torch.testing.assert_close(out_a.advantages, out_b.advantages)
    assert out_a.diagnostics == out_b.diagnostics
    fresh = make_estimator("drpo_release")(nxt)
    assert not torch.allclose(fresh.advantages, out_a.advantages)


def test_release_history_window_forgets_old_steps() -> None:
    windowed = make_estimator("drpo_release:history_window=1")
    windowed(batch([[1.0, 1.0]] * 20, domain_names=("a",)))
    last = batch([[1.0, 0.0], [0.0, 1.0]], domain_names=("a",))
    fresh = make_estimator("drpo_release")(last)
    forgot = windowed(last)
    torch.testing.assert_close(forgot.advantages, fresh.advantages)
    assert forgot.diagnostics == fresh.diagnostics  # T_g from the last step only, not the 20 [1, 1] questions
    assert windowed.state_dict()["weights"].sum().item() == 2.0


def test_release_history_rows_are_merged() -> None:
    est = make_estimator("drpo_release")
    for _ in range(5):
        est(batch([[1.0, 0.0]] * 4 + [[0.0, 0.0]] * 2, domain_names=("a",)))
    state = est.state_dict()
    assert state["rows"].shape[0] == 2
    assert sorted(state["weights"].tolist()) == [10.0, 20.0]


def test_release_rejects_a_changed_number_of_rollouts() -> None:
    est = make_estimator("drpo_release")
    est(batch([[1.0, 0.0]], domain_names=("a",)))
    with pytest.raises(ValueError, match="n_rollouts fixed"):
        est(batch([[1.0, 0.0, 1.0]], domain_names=("a",)))


def test_release_rejects_groups_of_several_sizes_in_one_batch() -> None:
    # per batch, domains may differ in group size; a history of zero-padded vectors would halve means
    mixed = batch([[1.0, 0.0], [1.0, 1.0, 0.0, 1.0]], domains=[0, 1], domain_names=("a", "b"))
    make_estimator("drpo_nokl")(mixed)
    for spec in ("drpo_release", "drpo_release:clusters=false"):
        with pytest.raises(ValueError, match="groups of 2 and of 4 rollouts"):
            make_estimator(spec)(mixed)


def test_per_batch_presets_are_stateless() -> None:
    est = make_estimator("drpo")
    assert est.state_dict() == {}
    with pytest.raises(ValueError, match="stateless"):
        est.load_state_dict({"rows": torch.zeros(1)})


def test_drpo_without_kl_damping_needs_no_logprobs() -> None:
    assert make_estimator("drpo").requires == {"old_logprobs", "ref_logprobs"}
    assert make_estimator("drpo:kl_damping=false").requires == frozenset()
    assert make_estimator("drpo_release").requires == frozenset()
    with pytest.raises(ValueError, match="old_logprobs"):
        make_estimator("drpo")(batch(**HAND))


def test_drpo_rejects_groups_of_different_sizes_in_one_domain() -> None:
    with pytest.raises(ValueError, match="same n_rollouts"):
        make_estimator("drpo_nokl")(batch([[1.0, 0.0], [1.0, 0.0, 1.0]], domain_names=("a",)))


def test_drpo_rejects_a_group_spanning_two_domains() -> None:
    inputs = batch([[1.0, 0.0]], domain_names=("a", "b"))
    split = AdvantageInputs(
        rewards=inputs.rewards, response_mask=inputs.response_mask, group_ids=inputs.group_ids,
        domains=torch.tensor([0, 1]), domain_names=("a", "b"),
    )
    with pytest.raises(ValueError, match="two domains"):
        make_estimator("drpo_nokl")(split)


def test_history_window_without_history_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="history_window"):
        make_estimator("drpo:history_window=3")


def test_fast_and_sklearn_backends_agree_on_full_drpo_batches() -> None:
    inputs = full_inputs(_separated_cluster_batch(11))
    fast, ref = make_estimator("drpo")(inputs), make_estimator("drpo:kmeans=sklearn")(inputs)
    torch.testing.assert_close(fast.advantages, ref.advantages)


@pytest.mark.parametrize("spec", ["drpo_release", "drpo_nokl", "drpo_release:kmeans=sklearn"])
def test_a_listed_domain_without_rollouts_changes_nothing(spec: str) -> None:
    groups = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    with_gap = batch(groups, domains=[0, 0, 2, 2, 2], domain_names=("a", "unused", "c"))
    without = batch(groups, domains=[0, 0, 1, 1, 1], domain_names=("a", "c"))
    out_gap, out = make_estimator(spec)(with_gap), make_estimator(spec)(without)
    torch.testing.assert_close(out_gap.advantages, out.advantages)
    assert out_gap.diagnostics == out.diagnostics
