"""The reward function OpenRLHF calls: give this file's path to ``--reward.remote_url``.

OpenRLHF 0.11.2 loads a ``.py`` reward URL with ``importlib`` inside every vLLM engine and calls
``reward_func(queries, prompts, labels)`` after each generation, one rollout per call in a worker
thread (``SingleTurnAgentExecutor._fetch_rewards_via_func``): ``queries`` are the decoded
prompt + response (special tokens kept), ``prompts`` the chat-templated prompts, ``labels`` the
``label`` field of the prompt file (our :class:`~rlbench_med.runners.openrlhf.data.PromptLabel`
JSON). The score is the suite's own reward (:func:`~rlbench_med.suites.rewards.make_reward`: the
reward function, weights, IoU reduction and accuracy form carried by the label) on the parsed
response, so a response scores the same here as in the local runner.

Returned dict: ``rewards`` ``[B]`` (the total), ``scores`` ``[B]`` (the accuracy component, which
OpenRLHF's dynamic filtering reads) and ``extra_logs`` with one ``[B]`` tensor per component
(``reward/accuracy``, ``reward/iou``, ``reward/format``, ``reward/length``), which OpenRLHF copies
into ``Experience.info``.

OpenRLHF logs an exception of ``reward_func`` at info level and leaves that rollout without a
reward (``agent.py``, ``execute``); the rlbench trainer refuses such a rollout and reports
:func:`missing_reward_error`, which runs ``reward_func`` again on the same inputs to show the error.
"""

from __future__ import annotations

import functools
import re
import threading

import torch

from rlbench_med.runners.openrlhf.data import PromptLabel
from rlbench_med.suites.rewards import Reward, RewardBreakdown, make_reward, parse_answer

#: How much of the end of the prompt is searched for in the query when the query does not start
#: with the prompt verbatim (a VLM's image placeholder is expanded into many tokens when decoded;
#: the text after the last image is unaffected).
_PROMPT_TAIL = 64
#: Special-token text a decoded response may end with (``<|im_end|>``, ``<|endoftext|>``, ``</s>``...).
_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[^<>|]{1,40}\|>|</s>|<eos>|<end_of_turn>))+\s*$")

COMPONENTS = ("accuracy", "iou", "format", "length")
# vLLM engines call reward_func from several threads; the scorer's mask cache is not thread-safe.
_LOCK = threading.Lock()


def reward_function(label: PromptLabel) -> Reward:
    """The scorer of ``label``'s reward settings (one cached per setting: masks are read once per process)."""
    return _scorer(label.reward, label.reward_weights, label.iou_reduce, label.accuracy_reward)


@functools.lru_cache(maxsize=16)
def _scorer(reward: str, weights: str, iou_reduce: str, accuracy: str) -> Reward:
    return make_reward(reward, weights, iou_reduce, accuracy=accuracy)  # type: ignore[arg-type]


def response_text(query: str, prompt: str) -> str:
    """The generated part of ``query`` (prompt + response), without trailing special tokens.

    Raises ``ValueError`` when the end of the prompt cannot be found in the query.
    """
    if query.startswith(prompt):
        response = query[len(prompt) :]
    else:
        tail = prompt[-_PROMPT_TAIL:]
        at = query.rfind(tail) if tail else -1
        if at < 0:
            raise ValueError(
                "reward_func: the query does not contain the end of its prompt "
                f"(...{tail[-40:]!r}); cannot tell the response apart"
            )
        response = query[at + len(tail) :]
    return _TRAILING_SPECIAL.sub("", response)


def score_response(response: str, label: PromptLabel) -> RewardBreakdown:
    """The suite's reward of ``response`` for the sample described by ``label``."""
    answer = parse_answer(response)
    with _LOCK:
        return reward_function(label).score(label.to_sample(), answer)


def reward_func(queries: list[str], prompts: list[str], labels: list[str]) -> dict[str, object]:
    """OpenRLHF's reward hook (see the module docstring for the returned dict)."""
    if not (len(queries) == len(prompts) == len(labels)):
        raise ValueError(
            f"reward_func: got {len(queries)} queries, {len(prompts)} prompts and {len(labels)} labels; "
            "they must match one to one"
        )
    scores = [
        score_response(response_text(q, p), PromptLabel.from_json(lab, where=f"reward_func label {i}"))
        for i, (q, p, lab) in enumerate(zip(queries, prompts, labels))
    ]
    column = {name: torch.tensor([getattr(s, name) for s in scores], dtype=torch.float32) for name in COMPONENTS}
    return {
        "rewards": torch.tensor([s.total for s in scores], dtype=torch.float32),
        "scores": column["accuracy"],
        "extra_logs": {f"reward/{name}": column[name] for name in COMPONENTS},
    }


class RewardError(RuntimeError):
    """A rollout came back from OpenRLHF's executor without a reward; the message has the record and the error."""


def missing_reward_error(query: str, prompt: str, label: str) -> RewardError:
    """The error for a rollout without a reward: which sample, and ``reward_func``'s own error on it.

    ``reward_func`` is deterministic in its inputs, so calling it again here on the rollout's
    query, prompt and label raises what it raised inside the vLLM engine.
    """
    try:
        record = PromptLabel.from_json(label, where="label")
        sample = f"sample {record.uid} ({record.domain}/{record.dataset})"
    except ValueError:
        sample = f"a sample with label {label[:120]!r}"
    try:
        out = reward_func([query], [prompt], [label])
    except Exception as exc:  # the error to report, whatever it is
        why = f"{type(exc).__name__}: {exc}"
    else:
        why = (
            f"reward_func scores it here ({float(out['rewards'][0]):g}), so it failed only inside the vLLM engine's "
            "process; see that engine's log in the Ray logs"
        )
    response = query[len(prompt) :] if query.startswith(prompt) else query[-200:]
    return RewardError(
        f"{sample} has no reward: reward_func failed inside OpenRLHF's executor, which would train without it: "
        f"{why}; response {response[:200]!r}"
    )
