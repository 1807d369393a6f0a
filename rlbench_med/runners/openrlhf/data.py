"""Suite samples -> OpenRLHF prompt JSONL, and back.

One line per sample::

    {"input": [{"role": "system", "content": "..."}, {"role": "user", "content": "<image>\\n..."}],
     "images": ["/abs/path.png"],          # vision-language models only
     "label": "{\\"uid\\": ..., \\"answer\\": [...], \\"domain\\": ..., ...}",
     "datasource": "cxr"}

- ``input`` is a chat: OpenRLHF renders it with the model's chat template
  (``--data.apply_chat_template``) and turns each ``<image>`` tag into an image slot.
- ``images`` holds a sample's images and, for each of its videos, ``video_frames`` frames sampled
  evenly as the QoQ-Med release samples them (first and last included), written as PNG files at the
  video's own size to ``<prompt file stem>_frames/`` beside the prompt file. OpenRLHF 0.11.2 feeds
  a VLM images only; the QoQ-Med release also appends a video's frames to the image list and
  rewrites ``<video>`` to ``<image>`` tags, so here a video reaches the model as its frames, one
  ``<image>`` tag each, in the order of the problem's tags.
- ``label`` is the JSON text of a :class:`PromptLabel` (``--data.label_key label``): OpenRLHF hands it
  unchanged to the reward function and keeps it in ``Experience.labels``, so the reward and the
  advantage step read the answer, domain, dataset, task, classes, mask/box and reward settings
  (function, weights, IoU reduction, accuracy form) of every rollout from it.
- ``datasource`` is the domain (OpenRLHF groups its own evaluation logs by it).

Paths are absolute: every node of a multi-node run must see them (a shared filesystem).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlbench_med.suites.data import Sample
from rlbench_med.suites.media import VIDEO_ERRORS, read_video_frames
from rlbench_med.suites.rewards import RewardWeights

IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"
_VISUAL_TAG = re.compile(f"{IMAGE_TAG}|{VIDEO_TAG}")

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


def visual_order(sample: Sample) -> list[tuple[str, int]]:
    """The sample's images and videos in the order its user turn shows them: ``("images", i)`` or ``("videos", k)``.

    The order of the problem's ``<image>`` and ``<video>`` tags when it has one per image and one per
    video; images, then videos, when it has none. Other tag counts raise :class:`ExportError`.
    """
    tags = _VISUAL_TAG.findall(sample.problem)
    if not tags:
        return [("images", i) for i in range(len(sample.images))] + [("videos", k) for k in range(len(sample.videos))]
    counts = (tags.count(IMAGE_TAG), tags.count(VIDEO_TAG))
    if counts != (len(sample.images), len(sample.videos)):
        raise ExportError(
            f"sample {sample.uid}: the problem has {counts[0]} {IMAGE_TAG} and {counts[1]} {VIDEO_TAG} tag(s) but "
            f"{len(sample.images)} image(s) and {len(sample.videos)} video(s); give one tag per image and per video, "
            "or none"
        )
    seen = {IMAGE_TAG: 0, VIDEO_TAG: 0}
    order = []
    for tag in tags:
        order.append(("images" if tag == IMAGE_TAG else "videos", seen[tag]))
        seen[tag] += 1
    return order


def sample_messages(sample: Sample, *, vlm: bool, system_prompt: str = "", video_frames: int = 2) -> list[dict[str, str]]:
    """The chat of one sample: optional system message, then the user turn.

    The user turn is the local runner's text prompt (``runners.local.hf_policy.prompt_text``: the
    problem, the class list, the answer format and the image size for boxes), so a text policy
    reads the same prompt on both runners. For a vision-language model it holds one ``<image>`` tag
    per image and ``video_frames`` per video (one per frame): the problem's own tags, each
    ``<video>`` becoming its frames' tags, or, when the problem has none, all tags put first
    (:func:`visual_order` checks the counts). For a text model the tags are removed.
    """
    from rlbench_med.runners.local.hf_policy import prompt_text, text_prompt

    problem = prompt_text(sample).strip()
    if vlm and (sample.images or sample.videos):
        frames = "\n".join([IMAGE_TAG] * video_frames)
        if _VISUAL_TAG.search(sample.problem):
            visual_order(sample)  # the counts match
            problem = problem.replace(VIDEO_TAG, frames)
        else:
            tags = [IMAGE_TAG if kind == "images" else frames for kind, _ in visual_order(sample)]
            problem = "\n".join(tags) + "\n" + problem
    else:
        problem = text_prompt(sample)  # the local runner's hf: policy reads the same turn
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": problem})
    return messages


def visual_files(sample: Sample, frames_dir: Path, line: int, video_frames: int) -> list[str]:
    """The absolute image paths of one prompt, in :func:`visual_order`; video frames are written to ``frames_dir``.

    A video's frames go to ``<frames_dir>/<line>-video<k>-frame<j>.png`` (``line`` 0-based in the
    prompt file), so an export of the same samples writes the same files.
    """
    files = []
    for kind, k in visual_order(sample):
        if kind == "images":
            files.append(str(Path(sample.images[k]).resolve()))
            continue
        video = sample.videos[k]
        try:
            frames = read_video_frames(video, video_frames)
        except VIDEO_ERRORS as exc:
            raise ExportError(f"sample {sample.uid}: videos: {exc}") from None
        frames_dir.mkdir(parents=True, exist_ok=True)
        for j, frame in enumerate(frames):
            path = frames_dir / f"{line:06d}-video{k}-frame{j}.png"
            frame.save(path)
            files.append(str(path.resolve()))
    return files


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
    video_frames: int = 2,
    limit: int = 0,
) -> dict[str, Any]:
    """Write ``samples`` as OpenRLHF prompt JSONL at ``path``; return a summary.

    ``limit`` > 0 keeps the first ``limit`` samples. Samples carrying time series raise
    :class:`ExportError` unless ``time_series="drop"`` (OpenRLHF feeds text and images only). For a
    vision-language model each video becomes ``video_frames`` images (:func:`visual_files`, written
    to ``<path stem>_frames/``). The summary holds ``n``, ``domains`` and ``datasets`` (sorted),
    ``max_images`` (most images of one prompt, video frames included; 0 for a text model),
    ``video_frames`` (frame images written) and ``dropped_time_series`` (samples whose signals were
    left out).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if video_frames < 1:
        raise ExportError(f"video_frames must be >= 1, got {video_frames}")
    frames_dir = path.with_name(path.stem + "_frames")
    n = max_images = dropped = frames = 0
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
                "input": sample_messages(sample, vlm=vlm, system_prompt=system_prompt, video_frames=video_frames),
                "label": PromptLabel.from_sample(
                    sample, reward=reward, reward_weights=reward_weights, iou_reduce=iou_reduce,
                    accuracy_reward=accuracy_reward,
                ).to_json(),
                "datasource": sample.domain,
            }
            if vlm and (sample.images or sample.videos):
                record["images"] = visual_files(sample, frames_dir, n, video_frames)
                max_images = max(max_images, len(record["images"]))
                frames += video_frames * len(sample.videos)
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
        "video_frames": frames,
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
