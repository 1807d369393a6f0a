"""The README's examples run as written, and it documents every registered name."""

import re
import subprocess
import sys
from pathlib import Path

import torch

from rlbench_med.algorithms import AdvantageInputs, list_algorithms
from rlbench_med.suites import SUITES

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {marker!r}"
    return match.group(1)


def test_quick_start_is_two_commands_running_the_main_job_and_the_tests():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", text, re.S)
    assert block, "README has no quick start block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "rlbench-med run --suite climb_vision --algos drpo,grpo" in commands[0]
    assert "pytest" in commands[1] and ".[test]" in commands[1]


def test_every_algorithm_and_suite_is_documented():
    text = README.read_text(encoding="utf-8")
    for name, _ in list_algorithms():
        assert f"`{name}`" in text, f"README does not mention algorithm {name}"
    for name in SUITES.names():
        assert f"`{name}`" in text, f"README does not mention suite {name}"


def test_plugin_example_registers_a_working_estimator(tmp_path):
    plugin = tmp_path / "my_estimator.py"
    plugin.write_text(_python_block_after("### Adding an algorithm"), encoding="utf-8")
    listing = subprocess.run(
        [sys.executable, "-m", "rlbench_med.cli", "list", "algos", "--plugin", str(plugin)],
        capture_output=True, text=True, check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^mean_baseline\s+R - prompt-group mean", listing.stdout, re.M)

    from rlbench_med.algorithms import make_estimator
    from rlbench_med.registry import load_plugin

    load_plugin(str(plugin))
    est = make_estimator("mean_baseline:scale=0.5")
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])  # groups {1, 0} and {0, 0}
    inputs = AdvantageInputs(
        rewards=rewards,
        response_mask=torch.tensor([[1.0, 1.0, 0.0]] * 4),
        group_ids=torch.tensor([0, 0, 1, 1]),
        domains=torch.zeros(4, dtype=torch.long),
        domain_names=("cxr",),
    )
    adv = est(inputs).advantages
    expected = torch.tensor([[0.25, 0.25, 0.0], [-0.25, -0.25, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(adv.float(), expected)


def test_reward_plugin_example_lists_scores_and_trains(tmp_path):
    plugin = tmp_path / "my_reward.py"
    plugin.write_text(_python_block_after("### Adding a reward"), encoding="utf-8")
    listing = subprocess.run(
        [sys.executable, "-m", "rlbench_med.cli", "list", "rewards", "--plugin", str(plugin)],
        capture_output=True, text=True, check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^exact_only\s+1 for exactly the true label set", listing.stdout, re.M)

    from rlbench_med.registry import load_plugin
    from rlbench_med.suites import Sample
    from rlbench_med.suites.rewards import make_reward

    load_plugin(str(plugin))
    record = Sample(uid="1", problem="?", labels=("Melanoma",), domain="derm", dataset="HAM10000", task="HAM10000",
                    classes=("Melanoma", "Nevus"))
    reward = make_reward("exact_only")
    assert reward.score_text(record, "\\boxed{melanoma}").total == 1.0
    assert reward.score_text(record, "\\boxed{Melanoma, Nevus}").total == 0.0
    # reward_weights overrides the registered weights: format is 0 where the plugin leaves it out
    assert make_reward("exact_only", "0.5,0,1,0").score_text(record, "\\boxed{Melanoma}").total == 0.5


def test_every_output_folder_the_readme_writes_into_the_checkout_is_git_ignored():
    text = README.read_text(encoding="utf-8")
    folders = set(re.findall(r"rlbench-med data synth [^\n]*?--out (\S+)", text))
    folders |= set(re.findall(r"rlbench-med run [^\n]*?--out (\S+)", text))
    inside = sorted(f"{f.rstrip('/')}/results.csv" for f in folders if not f.startswith(("/", "~")))
    assert "data/synth_vision/results.csv" in inside
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *inside], cwd=README.parent, capture_output=True,
                             text=True, check=False).stdout.split()
    assert sorted(ignored) == inside, f"not git-ignored: {sorted(set(inside) - set(ignored))}"
