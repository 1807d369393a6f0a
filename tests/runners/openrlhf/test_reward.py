"""``reward_func`` (the --reward.remote_url module) scores exactly as the suite's local reward."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rlbench_med.runners.openrlhf.data import PromptLabel
from rlbench_med.runners.openrlhf.flags import reward_module_path
from rlbench_med.runners.openrlhf.reward import response_text
from rlbench_med.suites.rewards import Answer, answer_to_text, make_reward, parse_answer

PROMPT = (
    "<|im_start|>system\nYou are a radiologist.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n"
)


def load_like_openrlhf():
    """Load the module the way OpenRLHF 0.11.2's SingleTurnAgentExecutor does (spec_from_file_location)."""
    spec = importlib.util.spec_from_file_location("reward_func", reward_module_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def texts_for(sample) -> list[str]:
    wrong = next(c for c in sample.classes if c not in sample.labels)
    return [
        answer_to_text(Answer(labels=sample.labels, boxes=((10.0, 8.0, 30.0, 20.0),), reasoning="opacity " * 20)),
        answer_to_text(Answer(labels=sample.labels)),
        answer_to_text(Answer(labels=(wrong,), boxes=((0.0, 0.0, 5.0, 5.0),), reasoning="short")),
        answer_to_text(Answer(labels=sample.labels, boxes=((10.0, 8.0, 30.0, 20.0), (0.0, 0.0, 5.0, 5.0)))),
        "<think>" + "word " * 300 + "</think>\\boxed{" + ", ".join(sample.classes) + "}",
        "no answer at all",
        "\\boxed{" + sample.labels[0] + "}\n```json\n[{\"label\": 1}]\n```",
    ]


@pytest.mark.parametrize(
    ("reward", "weights", "iou_reduce", "accuracy"),
    [("paper", "auto", "max", "set_f1"), ("release", "auto", "max", "set_f1"), ("paper", "0.2,0.6,0.1,0.1", "max", "set_f1"),
     ("paper", "auto", "mean", "set_f1"), ("paper", "auto", "max", "exact")],
)
def test_reward_func_equals_the_local_reward_on_the_same_texts(samples, reward, weights, iou_reduce, accuracy):
    reward_func = load_like_openrlhf()
    local = make_reward(reward, weights, iou_reduce, accuracy=accuracy)
    queries, labels, expected = [], [], []
    for sample in samples:
        for text in texts_for(sample):
            queries.append(PROMPT + text + "<|im_end|>")
            labels.append(PromptLabel.from_sample(sample, reward=reward, reward_weights=weights, iou_reduce=iou_reduce,
                                                  accuracy_reward=accuracy).to_json())
            expected.append(local.score(sample, parse_answer(text)))
    out = reward_func(queries, [PROMPT] * len(queries), labels)
    assert out["rewards"].dtype == torch.float32 and out["rewards"].shape == (len(queries),)
    assert torch.allclose(out["rewards"].double(), torch.tensor([e.total for e in expected], dtype=torch.float64), atol=1e-6)
    for name in ("accuracy", "iou", "format", "length"):
        want = torch.tensor([getattr(e, name) for e in expected], dtype=torch.float64)
        assert torch.allclose(out["extra_logs"][f"reward/{name}"].double(), want, atol=1e-6), name
    assert torch.equal(out["scores"], out["extra_logs"]["reward/accuracy"])
    assert len({round(float(r), 6) for r in out["rewards"]}) > 4  # the texts really score differently


def test_response_is_found_when_image_tokens_expand_in_the_query():
    expanded = PROMPT.replace("<|image_pad|>", "<|image_pad|>" * 50)
    assert response_text(expanded + "\\boxed{A}<|im_end|><|endoftext|>", PROMPT) == "\\boxed{A}"
    assert response_text(PROMPT + "reasoning \\boxed{A}</s>", PROMPT) == "reasoning \\boxed{A}"


def test_unrelated_query_is_an_error():
    with pytest.raises(ValueError, match="does not contain the end of its prompt"):
        response_text("something else entirely", PROMPT)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="one to one"):
        load_like_openrlhf()(["a"], [], [])
