"""Measure the suites: generation and validation time, data sizes and skew, metric and reward
throughput, and whether the synthetic tasks are learnable (a small CNN beats chance on
climb_vision; on mimic_fusion full input beats every input ablation).

Usage: ``python benchmarks/suites.py [--out benchmarks/results/suites.json] [--skip-learn]``.
Writes one JSON file; prints a short summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlbench_med.suites import RewardFunction, compute_metrics, generate, load_data, load_image, load_signal, validate_dir
from rlbench_med.suites.catalogue import VISION_DOMAINS, datasets_of
from rlbench_med.suites.data import ClinicalData, Sample
from rlbench_med.suites.spec import list_suites


def bench_generation(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suite in list_suites():
        root = tmp / suite
        start, cpu = time.perf_counter(), time.process_time()
        summary = generate(suite, root, seed=0, profile="quick")
        gen_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        entry = {"generate_s": round(gen_s, 2), "generate_cpu_s": round(cpu_s, 2), "counts": summary["counts"], "skew": summary.get("skew"), "files": summary.get("files")}
        if (root / "train.jsonl").exists():
            start = time.perf_counter()
            problems = validate_dir(root)
            entry["validate_s"] = round(time.perf_counter() - start, 2)
            entry["problems"] = len(problems)
            entry["bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        out[suite] = entry
        print(f"{suite:18s} generate {gen_s:6.2f} s (cpu {cpu_s:5.2f} s)  {entry.get('files')} files  counts {summary['counts'].get('train')}")
    return out


def bench_metrics(n: int = 100_000, repeats: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    entries = [e for d in VISION_DOMAINS for e in datasets_of(d)]
    records = []
    for _ in range(n):
        e = entries[int(rng.integers(len(entries)))]
        k = int(rng.integers(1, 3))
        records.append(
            {
                "domain": e.domain,
                "dataset": e.dataset,
                "labels": list(rng.choice(e.classes, size=min(k, len(e.classes)), replace=False)),
                "predicted": list(rng.choice(e.classes, size=int(rng.integers(0, 3)))),
                "iou": float(rng.random()),
            }
        )
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compute_metrics(records)
        times.append(time.perf_counter() - start)
    print(f"compute_metrics on {n} records: best {min(times):.3f} s")
    return {"records": n, "best_s": round(min(times), 4), "all_s": [round(t, 4) for t in times]}


def bench_rewards(data: ClinicalData, n: int = 20_000) -> dict[str, Any]:
    rf = RewardFunction("paper")
    samples = [s for s in data.train if s.segmentation_path is not None][:500]
    texts = [
        f"lesion seen in the left field \\boxed{{{s.labels[0]}}}\n```json\n"
        f'[{{"label": "{s.labels[0]}", "bbox_2d": [{s.bbox[0]}, {s.bbox[1]}, {s.bbox[2] + 2}, {s.bbox[3]}]}}]\n```'
        for s in samples
    ]
    start = time.perf_counter()
    total = 0.0
    for i in range(n):
        total += rf.score_text(samples[i % len(samples)], texts[i % len(texts)]).total
    elapsed = time.perf_counter() - start
    print(f"score_text: {n / elapsed:,.0f} answers/s")
    return {"answers": n, "seconds": round(elapsed, 3), "per_second": round(n / elapsed), "mean_reward": total / n}


def _head_index(samples: list[Sample]) -> dict[tuple[str, str], int]:
    pairs = sorted({(s.task, c) for s in samples for c in s.classes})
    return {p: i for i, p in enumerate(pairs)}


def learn_vision(data: ClinicalData, epochs: int, seed: int = 0) -> dict[str, Any]:
    """A 4-layer CNN with one sigmoid output per (dataset, class); chance-level acc is 0.5."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    heads = _head_index(data.train)

    def tensors(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.stack([load_image(s.images[0]) for s in samples]))
        y = torch.zeros(len(samples), len(heads))
        for i, s in enumerate(samples):
            for label in s.labels:
                y[i, heads[(s.task, label)]] = 1.0
        return x, y

    x_train, y_train = tensors(data.train)
    x_test, _ = tensors(data.test)
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    model = nn.Sequential(
        *block(3, 32), *block(32, 64), *block(64, 64), *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(heads)),
    )
    # Only the outputs of a sample's own dataset count in its loss.
    own = torch.zeros(len(data.train), len(heads))
    for i, s in enumerate(data.train):
        for c in s.classes:
            own[i, heads[(s.task, c)]] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x_train))
        for j in range(0, len(perm), 64):
            idx = perm[j : j + 64]
            logits = model(x_train[idx])
            loss = (nn.functional.binary_cross_entropy_with_logits(logits, y_train[idx], reduction="none") * own[idx]).sum() / own[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(x_test)).numpy()
    records = []
    for i, s in enumerate(data.test):
        scores = {c: prob[i, heads[(s.task, c)]] for c in s.classes}
        if len(s.classes) > 6:  # multi-label chest X-ray datasets: threshold
            predicted = [c for c, p in scores.items() if p > 0.5] or [max(scores, key=scores.get)]
        else:
            predicted = [max(scores, key=scores.get)]
        records.append({"domain": s.domain, "dataset": s.dataset, "labels": list(s.labels), "predicted": predicted})
    rows = compute_metrics(records)
    result = {r["domain"] + "/" + r["metric"]: round(r["value"], 3) for r in rows}
    print(f"vision CNN ({epochs} epochs, {train_s:.0f} s): " + ", ".join(f"{k} {v}" for k, v in result.items() if k.endswith("/acc")))
    return {"epochs": epochs, "train_s": round(train_s, 1), "metrics": result, "chance_acc": 0.5}


def _mimic_features(samples: list[Sample], vocab: dict[str, int] | None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    words = [s.problem.lower().replace(".", " ").split() for s in samples]
    if vocab is None:
        vocab = {w: i for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    text = np.zeros((len(samples), len(vocab)), np.float32)
    for i, ws in enumerate(words):
        for w in ws:
            if w in vocab:
                text[i, vocab[w]] = 1.0
    image = np.stack([load_image(s.images[0], size=64).mean(0).reshape(8, 8, 8, 8).mean((1, 3)).ravel() for s in samples])
    ecg_rows = []
    for s in samples:
        sig = load_signal(s.time_series[0])
        lead = sig[1] - np.median(sig[1])
        peaks = np.flatnonzero((lead[1:-1] > lead[:-2]) & (lead[1:-1] >= lead[2:]) & (lead[1:-1] > 0.5 * lead.max())) + 1
        rr = np.diff(peaks) / 100.0 if len(peaks) > 2 else np.array([1.0])
        st = [float(np.mean([sig[:, p + 14] - sig[:, p - 8] for p in peaks if 8 <= p < sig.shape[1] - 14], axis=0).mean())] if len(peaks) else [0.0]
        ecg_rows.append([len(peaks), rr.mean(), rr.std(), *st])
    return {"text": text, "vision": image, "ecg": np.array(ecg_rows, np.float32)}, vocab


def learn_mimic(data: ClinicalData) -> dict[str, Any]:
    """Logistic regression per task on bag-of-words text, pooled image pixels and ECG features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    out: dict[str, Any] = {}
    for task in ("los", "ihm48"):
        train = [s for s in data.train if s.task == task]
        test = [s for s in data.test if s.task == task]
        f_train, vocab = _mimic_features(train, None)
        f_test, _ = _mimic_features(test, vocab)
        y_train = [s.labels[0] for s in train]
        y_test = [s.labels[0] for s in test]
        for inputs, parts in {"text": ("text",), "ecg+text": ("ecg", "text"), "vision+text": ("vision", "text"), "full": ("ecg", "vision", "text")}.items():
            xa = np.hstack([f_train[p] for p in parts])
            xb = np.hstack([f_test[p] for p in parts])
            scaler = StandardScaler().fit(xa)
            clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit(scaler.transform(xa), y_train)
            out[f"{task}/{inputs}"] = round(float(balanced_accuracy_score(y_test, clf.predict(scaler.transform(xb)))), 3)
    print("mimic logistic balanced acc: " + ", ".join(f"{k} {v}" for k, v in out.items()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/suites.json"))
    parser.add_argument("--skip-learn", action="store_true", help="skip the learnability checks")
    parser.add_argument("--learn-only", action="store_true", help="only the learnability checks")
    parser.add_argument("--epochs", type=int, default=15, help="CNN epochs of the vision learnability check")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.learn_only:
            generate("climb_vision", Path(tmp) / "climb_vision", seed=0)
        else:
            result["generation"] = bench_generation(Path(tmp))
            result["metrics_100k"] = bench_metrics()
        vision = load_data(Path(tmp) / "climb_vision")
        if not args.learn_only:
            result["rewards"] = bench_rewards(vision)
        if not args.skip_learn:
            result["learn_vision"] = learn_vision(vision, args.epochs)
            # More patients than the quick profile, so the test estimate of each ablation is stable.
            big = Path(tmp) / "mimic_big"
            generate("mimic_fusion", big, seed=0, data_overrides={"patients_train": 1500, "patients_test": 1000})
            result["learn_mimic"] = learn_mimic(load_data(big))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
