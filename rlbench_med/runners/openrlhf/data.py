"""Suite samples -> OpenRLHF prompt JSONL, and back.

One line per sample::

    {"input": [{"role": "system", "content": "..."}, {"role": "user", "content": "<image>\\n..."}],
     "images": ["/abs/path.png"],          # vision-language models only
     "label": "{\\"uid\\": ..., \\"answer\\": [...], \\"domain\\": ..., ...}",
     "datasource": "cxr"}

- ``input`` is a chat: OpenRLHF renders it with the model's chat template
  (``--data.apply_chat_template``) and turns each ``<image>`` tag into an image slot.
- ``label`` is the JSON text of a :class:`PromptLabel` (``--data.label_key label``): OpenRLHF hands it
  unchanged to the reward function and keeps it in ``Experience.labels``, so the reward and the
  advantage step read the answer, domain, dataset, task, classes, mask/box, reward function and
  weights of every rollout from it.
- ``datasource`` is the domain (OpenRLHF groups its own evaluation logs by it).

Paths are absolute: every node of a multi-node run must see them (a shared filesystem).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlbench_med.suites.data import Sample
from rlbench_med.suites.rewards import RewardWeights

IMAGE_TAG = "<image>"

#: Marks the end of the problem in the prompt text (the class list follows it).
OPTIONS_MARK = "\nOptions: "


class ExportError(ValueError):
    """A sample that cannot be exported, or an export line that cannot be read back."""


@dataclass(frozen=True)
class PromptLabel:
    """What the reward and the advantage step need to know about a prompt (the ``label`` JSON).

    ``reward`` names the reward function (``paper``, ``release``); ``reward_weights`` is
    ``"acc,iou,format,length"`` numbers; ``iou_reduce`` and ``accuracy_reward`` (``set_f1`` or
    ``exact``) are the reward's settings (:func:`~rlbench_med.suites.rewards.make_reward`);
    ``segmentation_path`` is absolute.
    """

    uid: str
    answer: tuple[str, ...]
    domain: str
    dataset: str
    task: str
    classes: tuple[str, ...]
    segmentation_path: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    image_size: tuple[int, int] | None = None
    split: str = "train"
    reward: str = "paper"
    reward_weights: str = "0.6,0.2,0.1,0.1"
    iou_reduce: str = "max"
    accuracy_reward: str = "set_f1"

    @classmethod
    def from_sample(
        cls, sample: Sample, *, reward: str = "paper", reward_weights: str = "auto", iou_reduce: str = "max",
        accuracy_reward: str = "set_f1",
    ) -> PromptLabel:
        """The label of ``sample``, scored by ``reward`` with ``reward_weights`` (auto, a preset or four numbers),
        ``iou_reduce`` and ``accuracy_reward``."""
        return cls(
            uid=sample.uid,
            answer=tuple(sample.labels),
            domain=sample.domain,
            dataset=sample.dataset,
            task=sample.task,
            classes=tuple(sample.classes),
            segmentation_path=str(sample.segmentation_path) if sample.segmentation_path is not None else None,
            bbox=tuple(float(v) for v in sample.bbox) if sample.bbox is not None else None,  # type: ignore[arg-type]
            image_size=tuple(int(v) for v in sample.image_size) if sample.image_size is not None else None,  # type: ignore[arg-type]
            split=sample.split,
            reward=reward,
            reward_weights=RewardWeights.parse(reward_weights, reward).as_text(),
            iou_reduce=iou_reduce,
            accuracy_reward=accuracy_reward,
        )

    def to_json(self) -> str:
        """Compact JSON (lists for tuples, null for missing regions)."""
        data: dict[str, Any] = {
            "uid": self.uid,
            "answer": list(self.answer),
            "domain": self.domain,
            "dataset": self.dataset,
            "task": self.task,
            "classes": list(self.classes),
            "segmentation_path": self.segmentation_path,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "split": self.split,
            "reward": self.reward,
            "reward_weights": self.reward_weights,
            "iou_reduce": self.iou_reduce,
            "accuracy_reward": self.accuracy_reward,
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str = "label") -> PromptLabel:
        """Parse :meth:`to_json` output; ``where`` (e.g. ``file:line``) prefixes error messages."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ExportError(
                f"{where}: the label is not JSON ({exc}); was the prompt file written by "
                "rlbench_med.runners.openrlhf.data.export_prompts and passed with --data.label_key label?"
            ) from None
        if not isinstance(data, dict):
            raise ExportError(f"{where}: the label must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("uid", "answer", "domain", "dataset", "task", "classes") if k not in data]
        if missing:
            raise ExportError(f"{where}: the label lacks {', '.join(missing)}; re-export the prompts")
        bbox = data.get("bbox")
        size = data.get("image_size")
        return cls(
            uid=str(data["uid"]),
            answer=tuple(str(a) for a in data["answer"]),
            domain=str(data["domain"]),
            dataset=str(data["dataset"]),
            task=str(data["task"]),
            classes=tuple(str(c) for c in data["classes"]),
            segmentation_path=data.get("segmentation_path"),
            bbox=tuple(float(v) for v in bbox) if bbox is not None else None,  # type: ignore[arg-type]
            image_size=tuple(int(v) for v in size) if size is not None else None,  # type: ignore[arg-type]
            split=str(data.get("split", "train")),
            reward=str(data.get("reward", "paper")),
            reward_weights=str(data.get("reward_weights", "0.6,0.2,0.1,0.1")),
            iou_reduce=str(data.get("iou_reduce", "max")),
            accuracy_reward=str(data.get("accuracy_reward", "set_f1")),
        )

    def to_sample(self, problem: str = "", images: Sequence[str | Path] = ()) -> Sample:
        """A :class:`Sample` the suite's reward can score (the problem text is not in the label)."""
        return Sample(
            uid=self.uid,
            problem=problem,
            labels=self.answer,
            domain=self.domain,
            dataset=self.dataset,
            task=self.task,
            classes=self.classes,
            images=tuple(Path(p) for p in images),
            segmentation_path=Path(self.segmentation_path) if self.segmentation_path is not None else None,
            bbox=self.bbox,
            image_size=self.image_size,
            split=self.split,
        )


@dataclass(frozen=True)
class ExportedPrompt:
    """One line of an exported prompt file, read back."""

    messages: tuple[dict[str, str], ...]
    images: tuple[str, ...]
    label: PromptLabel
    datasource: str

    @property
    def problem(self) -> str:
        """The user message without the image tags, the class list and the answer format."""
        text = self.messages[-1]["content"].replace(IMAGE_TAG, "")
        head, sep, _ = text.rpartition(OPTIONS_MARK)
        return (head if sep else text).strip()

    def to_sample(self) -> Sample:
        return self.label.to_sample(self.problem, self.images)


def sample_messages(sample: Sample, *, vlm: bool, system_prompt: str = "") -> list[dict[str, str]]:
    """The chat of one sample: optional system message, then the user turn.

    The user turn is the local runner's text prompt (``runners.local.hf_policy.prompt_text``: the
    problem, the class list, the answer format and the image size for boxes), so a text policy
    reads the same prompt on both runners. For a vision-language model the user turn holds one
    ``<image>`` tag per image (the problem's own tags are kept when their count matches the images;
    otherwise tags are put first); for a text model the tags are removed.
    """
    from rlbench_med.runners.local.hf_policy import prompt_text

    problem = prompt_text(sample).strip()
    n_tags = problem.count(IMAGE_TAG)
    if vlm and sample.images:
        if n_tags == 0:
            problem = "\n".join([IMAGE_TAG] * len(sample.images)) + "\n" + problem
        elif n_tags != len(sample.images):
            raise ExportError(
                f"sample {sample.uid}: the problem has {n_tags} {IMAGE_TAG} tag(s) but {len(sample.images)} image(s); "
                "give one tag per image or none"
            )
    else:
        problem = problem.replace(IMAGE_TAG, "").strip()
    user = problem
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": user})
    return messages


def export_prompts(
    samples: Iterable[Sample],
    path: Path,
    *,
    vlm: bool,
    reward: str = "paper",
    reward_weights: str = "auto",
    iou_reduce: str = "max",
    accuracy_reward: str = "set_f1",
    system_prompt: str = "",
    time_series: Literal["refuse", "drop"] = "refuse",
    limit: int = 0,
) -> dict[str, Any]:
    """Write ``samples`` as OpenRLHF prompt JSONL at ``path``; return a summary.

    ``limit`` > 0 keeps the first ``limit`` samples. Samples carrying time series raise
    :class:`ExportError` unless ``time_series="drop"`` (OpenRLHF feeds text and images only).
    The summary holds ``n``, ``domains`` and ``datasets`` (sorted), ``max_images`` (most images of one
    prompt; 0 for a text model) and ``dropped_time_series`` (samples whose signals were left out).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max_images = dropped = 0
    domains: set[str] = set()
    datasets: set[str] = set()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for sample in samples:
            if limit and n >= limit:
                break
            if sample.time_series:
                if time_series == "refuse":
                    raise ExportError(
                        f"sample {sample.uid} ({sample.dataset}) has time series {[str(p) for p in sample.time_series]}; "
                        "the OpenRLHF runner feeds text and images only: set time_series=drop to train without the "
                        "signals, or use --runner local"
                    )
                dropped += 1
            record: dict[str, Any] = {
                "input": sample_messages(sample, vlm=vlm, system_prompt=system_prompt),
                "label": PromptLabel.from_sample(
                    sample, reward=reward, reward_weights=reward_weights, iou_reduce=iou_reduce,
                    accuracy_reward=accuracy_reward,
                ).to_json(),
                "datasource": sample.domain,
            }
            if vlm and sample.images:
                record["images"] = [str(Path(p).resolve()) for p in sample.images]
                max_images = max(max_images, len(sample.images))
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
            domains.add(sample.domain)
            datasets.add(sample.dataset)
    tmp.replace(path)
    return {
        "path": str(path),
        "n": n,
        "domains": sorted(domains),
        "datasets": sorted(datasets),
        "max_images": max_images,
        "dropped_time_series": dropped,
    }


def read_prompts(path: Path) -> list[ExportedPrompt]:
    """Read an exported prompt file back; errors name ``file:line`` and the field."""
    path = Path(path)
    out: list[ExportedPrompt] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExportError(f"{where}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise ExportError(f"{where}: expected a JSON object, got {type(record).__name__}")
            messages = record.get("input")
            if not (
                isinstance(messages, list)
                and messages
                and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
            ):
                raise ExportError(f"{where}: input: expected a non-empty list of chat messages with string content")
            label = record.get("label")
            if not isinstance(label, str):
                raise ExportError(f"{where}: label: expected the label JSON as a string, got {type(label).__name__}")
            images = record.get("images") or []
            if not (isinstance(images, list) and all(isinstance(p, str) for p in images)):
                raise ExportError(f"{where}: images: expected a list of paths")
            out.append(
                ExportedPrompt(
                    messages=tuple({"role": str(m.get("role", "user")), "content": m["content"]} for m in messages),
                    images=tuple(images),
                    label=PromptLabel.from_json(label, where=f"{where}: label"),
                    datasource=str(record.get("datasource", "default")),
                )
            )
    return out
