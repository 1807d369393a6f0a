"""Videos in the builtin policy: frames sampled as the release samples them, each through the image
encoder, features averaged over the valid frames; and a release-format folder trains end to end."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rlbench_med.cli import main
from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.inputs import encode_data
from rlbench_med.runners.local.policy import PolicyModel, PromptBatch
from rlbench_med.runners.local.vocab import AnswerVocab
from tests.runners.local.conftest import TINY
from tests.suites.release_folder import VIDEO_LEVELS, write_release_folder


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release_folder(tmp_path_factory.mktemp("release") / "climb")


def test_video_records_are_encoded_as_frame_sequences(release_dir: Path) -> None:
    config = LocalConfig(**{**TINY, "video_frames": 3, "image_size": 16})
    encoded = encode_data(release_dir, config)
    prompts = encoded.train.prompts
    assert prompts.image.shape == (13, 3, 3, 16, 16)  # 3 slots: the most any record has (a 3-frame video)
    ct = [s.dataset for s in encoded.train.samples].index("KiTS23")
    assert prompts.frames[ct].tolist() == [True, True, True] and bool(prompts.has_image[ct])
    grey = prompts.image[ct].mean(dim=(1, 2, 3)).numpy() * 255
    np.testing.assert_allclose(grey, [VIDEO_LEVELS[i] for i in (0, 3, 6)], atol=8)  # frames 0, 3, 6 of 7
    cxr = [s.dataset for s in encoded.train.samples].index("CheXpert")
    assert prompts.frames[cxr].tolist() == [True, False, False]
    ecg = [s.dataset for s in encoded.train.samples].index("PTB-XL")
    assert prompts.frames[ecg].tolist() == [False, False, False] and not bool(prompts.has_image[ecg])
    assert float(prompts.image[ecg].abs().sum()) == 0.0


def test_frames_go_through_the_image_encoder_and_are_averaged() -> None:
    torch.manual_seed(0)
    config = LocalConfig(**{**TINY, "image_size": 16})
    vocab = AnswerVocab.build({"T": ("A", "B")}, reasoning_vocab=4, box_bins=4, max_labels=1)
    model = PolicyModel(config, vocab, use_image=True, use_signal=False).eval()
    image = torch.rand(2, 3, 3, 16, 16)
    frames = torch.tensor([[True, True, True], [True, False, False]])
    batch = PromptBatch(image, frames, frames.any(1), torch.zeros(2, 12, 256), torch.zeros(2, dtype=torch.bool),
                        torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                        torch.zeros(2, dtype=torch.bool))
    with torch.no_grad():
        prefix, _ = model.prefix(batch)
        # Loop version: every valid frame through the encoder alone, features averaged.
        expected = []
        for p in range(2):
            feats = [model.image_encoder(4.0 * (image[p, f : f + 1] - 0.5)).flatten(2).transpose(1, 2)[0]
                     for f in range(3) if frames[p, f]]
            expected.append(model.image_proj(torch.stack(feats).mean(0)))
        tokens = model.image_tokens
        torch.testing.assert_close(prefix[:, 1 : 1 + tokens], torch.stack(expected), rtol=1e-5, atol=1e-6)
        # Pixels of invalid frames cannot change the prefix.
        noisy = image.clone()
        noisy[1, 1:] = torch.rand(2, 3, 16, 16)
        torch.testing.assert_close(model.prefix(replace(batch, image=noisy))[0], prefix)


@pytest.mark.slow
def test_release_folder_trains_with_climb_vision(release_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tracked: str) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["run", "--suite", "climb_vision", "--algos", "drpo_release,grpo", "--data", str(release_dir),
                 "--out", str(out), "--set", "steps=2", "--set", "sft_steps=4", "--set", "eval_every=0",
                 "--set", "checkpoint_every=0", "--set", "progress=false", "--set", "prompts_per_step=4",
                 "--set", "n_rollouts=2"])
    assert code == 0
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    domains = {r["domain"] for r in rows if r["algo"] == "drpo_release"}
    assert domains == {"cxr", "mammography", "dermoscopy", "ct", "fundus", "ultrasound", "endoscopic", "overall"}
