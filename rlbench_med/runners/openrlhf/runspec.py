"""What our trainer needs beyond OpenRLHF's own flags, written by the runner as ``run_spec.json``.

The launcher (``python -m rlbench_med.runners.openrlhf.launch --rlbench.spec FILE <OpenRLHF flags>``)
reads it and hands it to the trainer actor; everything else the trainer reads from OpenRLHF's
parsed arguments.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    """One job's settings for the rlbench trainer inside OpenRLHF.

    Attributes:
        estimator: registry spec string, e.g. ``drpo:k_max=3``.
        n_samples_per_prompt: rollouts per prompt (must equal ``--rollout.n_samples_per_prompt``).
        domain_names: the fixed domain (or dataset) order of ``AdvantageInputs.domains``.
        group_by: ``domain`` or ``dataset``.
        kl_mode: ``loss`` or ``reward``; kl_coef: its coefficient (the trainer uses its KL controller's value).
        metrics_path: JSONL the trainer appends ``{"step": s, "metrics": {...}}`` to, one line per step.
        predictions_path: JSONL of the final greedy evaluation of the test split, one line per sample.
        eval_prompts: the exported test prompts (scored once, at the end).
        validation_prompts, validation_predictions_path: the exported validation prompts, evaluated every
        ``eval_every`` steps (0: only at the end) for the curves, and their final predictions ('': no
        validation split).
        max_new_tokens, max_len: generation limits of evaluation and of the ReMax greedy baseline.
        ray_address: the Ray cluster to join ('' starts a local one).
        startup_timeout_s: bound of every wait before training starts (placement groups, actors, model loading); 0: none.
        device: ``cuda``, or ``cpu`` for OpenRLHF's pipeline on the CPU (:mod:`~rlbench_med.runners.openrlhf.cpu`).
    """

    estimator: str
    n_samples_per_prompt: int
    domain_names: tuple[str, ...]
    group_by: str
    kl_mode: str
    kl_coef: float
    metrics_path: str
    predictions_path: str
    eval_prompts: str
    eval_every: int
    max_new_tokens: int
    max_len: int
    ray_address: str = ""
    startup_timeout_s: float = 1800.0
    device: str = "cuda"
    validation_prompts: str = ""
    validation_predictions_path: str = ""

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["domain_names"] = list(self.domain_names)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "run spec") -> RunSpec:
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(
            f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING
        )
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}; rewrite it with the runner")
        data["domain_names"] = tuple(data["domain_names"])
        return cls(**data)

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run spec {path} does not exist; the runner writes it before launching")
        return cls.from_json(path.read_text(encoding="utf-8"), where=str(path))
