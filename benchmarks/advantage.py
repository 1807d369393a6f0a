"""Time every advantage estimator on synthetic rollout batches and write JSON + a table.

Measures, in one run on one machine:
- time per call of every registered estimator at 512 prompts x 5 rollouts, 8 vision domains with
  CLIMB-like skew, response length 64;
- the reference DRPO (scikit-learn ``KMeans(n_init="auto", random_state=0)`` refit for every
  k = 1..k_max per domain, as the published code does) on the same batches, and the speedup;
- scaling of ``drpo`` (and the reference) over batch sizes B = 640 .. 20480 rollouts;
- ``drpo_release`` (and its reference) after 1 .. 100 steps of accumulated history.

Usage: ``python benchmarks/advantage.py [--quick] [--out benchmarks/results/advantage.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlbench_med.algorithms import AdvantageInputs, list_estimators, make_estimator

#: Training-set size of each CLIMB vision domain, summed over its datasets
#: (source: the CLIMB catalogue, QoQ-Med arXiv 2506.00711, climb_catalogue.csv).
CLIMB_TRAIN_SIZES = {
    "cxr": 348516 + 212243 + 15000 + 2002 + 5284,
    "mammography": 16000 + 2230 + 1404,
    "dermoscopy": 26501 + 8012 + 1839,
    "ct": 4130 + 17434 + 361 + 1986 + 1342945,
    "fundus": 1394 + 2929 + 7950,
    "ultrasound": 583 + 266 + 74,
    "mri": 2870 + 202,
    "pathology": 15000,
}
DOMAINS = tuple(CLIMB_TRAIN_SIZES)


def domain_counts(prompts: int) -> np.ndarray:
    """Prompts per domain in proportion to the CLIMB training sizes, at least one each."""
    share = np.array([CLIMB_TRAIN_SIZES[d] for d in DOMAINS], dtype=np.float64)
    share /= share.sum()
    counts = np.maximum(1, np.floor(share * prompts)).astype(np.int64)
    counts[int(np.argmax(counts))] += prompts - int(counts.sum())
    return counts


def make_batch(prompts: int, n: int, t_len: int, *, seed: int, rewards: str = "discrete") -> AdvantageInputs:
    """A synthetic rollout batch with every optional input.

    ``rewards="discrete"``: 0.8 x correct (Bernoulli, per-question difficulty) + 0.2 x well formed
    (few distinct values, like the paper reward without boxes); ``"continuous"`` adds a uniform IoU
    term so nearly every reward vector is distinct (the worst case for clustering).
    """
    rng = np.random.default_rng(seed)
    counts = domain_counts(prompts)
    q_domain = np.repeat(np.arange(len(DOMAINS)), counts)
    domain_skill = np.linspace(0.2, 0.8, len(DOMAINS))
    q_skill = np.clip(domain_skill[q_domain] + rng.normal(0.0, 0.2, prompts), 0.02, 0.98)
    b = prompts * n
    correct = rng.random(b) < np.repeat(q_skill, n)
    formatted = rng.random(b) < 0.9
    r = 0.8 * correct + 0.2 * formatted
    if rewards == "continuous":
        r = 0.6 * correct + 0.2 * formatted + 0.2 * rng.random(b)
    perm = rng.permutation(b)  # rollouts arrive in any order
    lengths = rng.integers(t_len // 4, t_len + 1, b)
    mask = (np.arange(t_len)[None, :] < lengths[:, None]).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t_len, generator=gen) * 3
    return AdvantageInputs(
        rewards=torch.tensor(r[perm], dtype=torch.float32),
        response_mask=torch.from_numpy(mask),
        group_ids=torch.from_numpy(np.repeat(np.arange(prompts), n)[perm]),
        domains=torch.from_numpy(np.repeat(q_domain, n)[perm]),
        domain_names=DOMAINS,
        token_rewards=None,
        values=torch.randn(b, t_len, generator=gen),
        baseline_rewards=torch.tensor(np.repeat(0.8 * (q_skill > 0.5) + 0.2, n)[perm], dtype=torch.float32),
        old_logprobs=old,
        ref_logprobs=old + 0.05 * torch.randn(b, t_len, generator=gen),
    )


def fresh(batch: AdvantageInputs) -> AdvantageInputs:
    """A new inputs object per call, as a runner builds one per step (validation and the cached
    mask conversion are part of every measured call)."""
    return dataclasses.replace(batch)


def _summary(times: list[float]) -> dict[str, float]:
    return {"min_s": min(times), "median_s": statistics.median(times), "calls": float(len(times))}


def time_call(fn: Callable[[], object], *, repeats: int, budget_s: float) -> dict[str, float]:
    """Min / median seconds per call over ``repeats`` calls (fewer if ``budget_s`` runs out); one warm-up."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return _summary(times)


def time_pair(
    fast: Callable[[], object], ref: Callable[[], object], *, rounds: int, fast_per_round: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``fast`` and ``ref`` interleaved (one ref call, then ``fast_per_round`` fast calls, per
    round), so both see the same machine load; the speedup is taken from the minima."""
    fast()
    ref()
    fast_times: list[float] = []
    ref_times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ref()
        ref_times.append(time.perf_counter() - t0)
        for _ in range(fast_per_round):
            t0 = time.perf_counter()
            fast()
            fast_times.append(time.perf_counter() - t0)
    return _summary(fast_times), _summary(ref_times)


def release_history(history: int, prompts: int, n: int, t_len: int) -> tuple[dict[str, object], AdvantageInputs]:
    """The state of a ``drpo_release`` estimator that has seen ``history - 1`` batches, and the next batch.

    The history does not depend on the clustering backend, so the same state serves both.
    """
    est = make_estimator("drpo_release")
    for step in range(history - 1):
        est(make_batch(prompts, n, t_len, seed=1000 + step))
    return est.state_dict(), make_batch(prompts, n, t_len, seed=1000 + history)


def release_call(spec: str, state: dict[str, object], batch: AdvantageInputs) -> Callable[[], object]:
    """One call of ``spec`` at a fixed history (the state is restored before every call)."""
    est = make_estimator(spec)

    def call() -> object:
        est.load_state_dict(state)
        return est(fresh(batch))

    return call


def thread_pools() -> list[dict[str, object]]:
    """The BLAS / OpenMP pools (scikit-learn's reference runs with their defaults)."""
    from threadpoolctl import threadpool_info

    import sklearn.cluster  # noqa: F401  (loads the OpenMP runtime the reference uses)

    return [{k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "filepath")} for info in threadpool_info()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/advantage.json"))
    parser.add_argument("--quick", action="store_true", help="few sizes and repeats: a smoke run of a few seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    prompts, n, t_len = 512, 5, 64
    repeats = 5 if quick else 30
    budget = 2.0 if quick else 10.0
    result: dict[str, object] = {
        "setup": {
            "prompts": prompts, "n_rollouts": n, "response_len": t_len, "domains": list(DOMAINS),
            "prompts_per_domain": domain_counts(prompts).tolist(), "torch_threads": args.threads,
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "quick": quick, "thread_pools": thread_pools(),
        }
    }

    rows: list[tuple[str, float, float, float | None, str]] = []  # label, min, median, speedup, note
    rounds, per_round = (2, 3) if quick else (5, 6)

    per_estimator: dict[str, dict[str, float]] = {}
    batch = make_batch(prompts, n, t_len, seed=0)
    for name in list_estimators():
        est = make_estimator(name)
        per_estimator[name] = time_call(lambda: est(fresh(batch)), repeats=repeats, budget_s=budget)
        rows.append((f"{name} B={prompts * n}", per_estimator[name]["min_s"], per_estimator[name]["median_s"], None, ""))
    result["estimators_512x5"] = per_estimator

    reference: dict[str, dict[str, object]] = {}
    for kind in ("discrete", "continuous"):
        batch = make_batch(prompts, n, t_len, seed=0, rewards=kind)
        fast, ref = make_estimator("drpo"), make_estimator("drpo:kmeans=sklearn")
        fast_t, ref_t = time_pair(lambda: fast(fresh(batch)), lambda: ref(fresh(batch)), rounds=rounds, fast_per_round=per_round)
        speedup = ref_t["min_s"] / fast_t["min_s"]
        reference[kind] = {"drpo": fast_t, "reference": ref_t, "speedup": speedup}
        note = f"reference {ref_t['min_s'] * 1e3:.1f} ms (median {ref_t['median_s'] * 1e3:.1f})"
        rows.append((f"drpo vs reference, {kind} rewards", fast_t["min_s"], fast_t["median_s"], speedup, note))
    result["drpo_vs_reference_512x5"] = reference

    scaling: dict[str, dict[str, object]] = {}
    sizes = [640, 2560, 20480] if quick else [640, 1280, 2560, 5120, 10240, 20480]
    for b in sizes:
        batch = make_batch(b // n, n, t_len, seed=1)
        fast, ref, grpo = make_estimator("drpo"), make_estimator("drpo:kmeans=sklearn"), make_estimator("grpo")
        fast_t, ref_t = time_pair(lambda: fast(fresh(batch)), lambda: ref(fresh(batch)), rounds=rounds, fast_per_round=per_round)
        grpo_t = time_call(lambda: grpo(fresh(batch)), repeats=repeats, budget_s=budget)
        speedup = ref_t["min_s"] / fast_t["min_s"]
        scaling[str(b)] = {"drpo": fast_t, "reference": ref_t, "grpo": grpo_t, "speedup": speedup}
        note = f"grpo {grpo_t['min_s'] * 1e3:.2f} ms; reference {ref_t['min_s'] * 1e3:.1f} ms"
        rows.append((f"drpo scaling B={b}", fast_t["min_s"], fast_t["median_s"], speedup, note))
    result["drpo_scaling"] = scaling

    history: dict[str, dict[str, object]] = {}
    steps = [1, 10, 50] if quick else [1, 10, 25, 50, 100]
    for h in steps:
        state, batch = release_history(h, prompts, n, t_len)
        fast = release_call("drpo_release", state, batch)
        ref = release_call("drpo_release:kmeans=sklearn", state, batch)
        fast_t, ref_t = time_pair(fast, ref, rounds=2 if h >= 50 else rounds, fast_per_round=per_round)
        speedup = ref_t["min_s"] / fast_t["min_s"]
        rows_in_history = int(state["rows"].shape[0])  # type: ignore[attr-defined]
        history[str(h)] = {
            "drpo_release": fast_t, "reference": ref_t, "speedup": speedup, "distinct_history_rows": rows_in_history
        }
        note = f"reference {ref_t['min_s'] * 1e3:.1f} ms"
        rows.append((f"drpo_release history={h} steps", fast_t["min_s"], fast_t["median_s"], speedup, note))
    result["drpo_release_history"] = history

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  {'min ms':>9}  {'median ms':>9}  {'speedup':>8}  note")
    for label, low, mid, speedup, note in rows:
        sp = f"{speedup:7.1f}x" if speedup is not None else " " * 8
        print(f"{label.ljust(width)}  {low * 1e3:9.3f}  {mid * 1e3:9.3f}  {sp}  {note}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
