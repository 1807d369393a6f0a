"""Which user flags (``openrlhf_args``) the runner refuses, resolved the way OpenRLHF resolves them.

OpenRLHF's ``train_ppo_ray`` parses with ``argparse`` defaults, so it accepts any unambiguous
abbreviation: ``--train.async_e`` *is* ``--train.async_enable``. Comparing the user's spelling
with our flag names would let such a flag through, so :func:`check_user_flags` first resolves
every user flag with a parser built from OpenRLHF 0.11.2's own flag table, then refuses

- the flags the runner sets itself (the table of :mod:`~rlbench_med.runners.openrlhf.flags`):
  passed twice, the user's value would silently win over the config field;
- the flags that would replace our trainer, reward or estimator (:data:`BYPASS`);
- the flags our trainer ignores (:data:`IGNORED`: OpenRLHF's evaluation, best-checkpoint
  tracking, its own advantage and reward shaping knobs), which would otherwise do nothing without a word.

The flag table is a snapshot (``openrlhf_0_11_2_flags.json`` beside this file) so the check also
runs where OpenRLHF is not installed (``--dry-run``); CI compares it with the parser that
OpenRLHF's own source builds (:func:`flag_table_from_source`), and
``python -m rlbench_med.runners.openrlhf.guard PATH/TO/train_ppo_ray.py`` rewrites it.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rlbench_med.typed_config import ConfigError

SNAPSHOT = Path(__file__).with_name("openrlhf_0_11_2_flags.json")

#: Destinations that would take the run away from our trainer, reward or estimator -> what to do instead.
BYPASS: dict[str, str] = {
    "train.async_enable": "it switches OpenRLHF to PPOTrainerAsync, which has no rlbench advantage step, "
    "reward checks or evaluation; the runner trains synchronously",
    "train.partial_rollout_enable": "it needs --train.async_enable (PPOTrainerAsync), which bypasses the rlbench trainer",
    "train.agent_func_path": "an agent executor replaces the suite's reward function; rewards come from "
    "reward.py (reward, reward_weights, iou_reduce, accuracy_reward)",
}
#: Destinations our trainer ignores -> which setting does the job instead.
IGNORED: dict[str, str] = {
    "ckpt.best_metric_key": "best checkpoints follow OpenRLHF's own evaluation, which the rlbench trainer does not "
    "run; evaluation is the runner's greedy pass (eval_every, eval_max_samples)",
    "algo.advantage.gamma": "the advantage comes from the registry estimator: set its own field "
    "(e.g. --algos 'ppo:gamma=0.99')",
    "algo.advantage.lambd": "the advantage comes from the registry estimator: set its own field (e.g. --algos 'ppo:lam=0.9')",
    "algo.advantage.no_std_norm": "the advantage comes from the registry estimator, which does its own normalisation "
    "(e.g. --algos 'grpo:std_norm=false')",
    "reward.clip_range": "rewards go to the registry estimator unclipped; the suite reward is already in [0, 1]",
}
#: Every ``--eval.*`` flag is ignored: the runner evaluates greedily on the exported test split.
IGNORED_PREFIX = "eval."
IGNORED_PREFIX_HINT = (
    "OpenRLHF's evaluation does not run inside the rlbench trainer; the runner evaluates greedily on the "
    "suite's test split: set eval_every and eval_max_samples"
)


class _Refused(Exception):
    """argparse's error, raised instead of printing usage and exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Refused(message)


# -- the flag table --------------------------------------------------------------------------------
def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    if isinstance(action, argparse._StoreAction):
        return "store"
    raise ValueError(f"OpenRLHF flag {action.option_strings} uses {type(action).__name__}, unknown to the guard")


_TYPES: dict[Any, str | None] = {None: None, int: "int", float: "float", str: "str"}


def _plain(value: Any) -> Any:
    """A default as JSON: a tuple is written ``{"tuple": [...]}`` so it reads back as a tuple, not a list."""
    return {"tuple": list(value)} if isinstance(value, tuple) else value


def _unplain(value: Any) -> Any:
    return tuple(value["tuple"]) if isinstance(value, dict) and set(value) == {"tuple"} else value


def flag_table(parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    """``[{"options", "dest", "kind", "nargs", "type", "default"}, ...]`` of every optional flag of ``parser``.

    ``type`` is the name of the value converter (int, float, str or None); the help flag is left out.
    """
    table = []
    for a in parser._actions:
        if not a.option_strings or isinstance(a, argparse._HelpAction):
            continue
        if a.type not in _TYPES:
            raise ValueError(f"OpenRLHF flag {a.option_strings} converts with {a.type!r}, unknown to the guard")
        table.append({"options": list(a.option_strings), "dest": a.dest, "kind": _kind(a), "nargs": a.nargs,
                      "type": _TYPES[a.type], "default": _plain(a.default)})
    return table


def parser_from_source(path: Path) -> argparse.ArgumentParser:
    """The parser that ``train_ppo_ray.py``'s ``__main__`` block builds, without importing the module.

    Runs the block's statements up to ``args = parser.parse_args()`` (only ``argparse`` and
    ``datetime`` calls), so no GPU package is imported.
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    main = next(
        (node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)), None
    )
    if main is None:
        raise ValueError(f"{path}: no `if __name__ == '__main__':` block")
    body = []
    for statement in main.body:
        if "parse_args" in ast.unparse(statement):
            break
        body.append(statement)
    namespace: dict[str, Any] = {"argparse": argparse, "datetime": datetime.datetime}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102 - OpenRLHF's own code
    return namespace["parser"]


def flag_table_from_source(path: Path) -> list[dict[str, Any]]:
    """:func:`flag_table` of :func:`parser_from_source` (what the snapshot must equal)."""
    return flag_table(parser_from_source(path))


@functools.lru_cache(maxsize=1)
def _snapshot() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(SNAPSHOT.read_text(encoding="utf-8")))


def snapshot_parser(*, defaults: bool) -> argparse.ArgumentParser:
    """OpenRLHF 0.11.2's ``train_ppo_ray`` flags from the snapshot.

    With ``defaults=False`` a parse holds only the flags actually given (abbreviations resolved);
    with ``defaults=True`` it holds every flag, as OpenRLHF's own parser would (before its checks).
    """
    converters = {"int": int, "float": float, "str": str, None: None}
    parser = _Parser(prog="openrlhf_args", add_help=False)
    for entry in _snapshot():
        default = entry["default"]
        kwargs: dict[str, Any] = {
            "dest": entry["dest"],
            "default": _unplain(default) if defaults else argparse.SUPPRESS,
        }
        if entry["kind"] == "store":
            kwargs.update(nargs=entry["nargs"], type=converters[entry["type"]])
        parser.add_argument(*entry["options"], action=entry["kind"], **kwargs)
    return parser


def parse_flags(argv: Sequence[str]) -> Any:
    """``argv`` parsed with OpenRLHF's flags and defaults, as nested namespaces (``args.actor.num_nodes``).

    Raises :class:`ConfigError` where OpenRLHF's parser would refuse ``argv``.
    """
    try:
        flat = vars(snapshot_parser(defaults=True).parse_args(list(argv)))
    except _Refused as exc:
        raise ConfigError(f"OpenRLHF 0.11.2's train_ppo_ray refuses the launch flags: {exc}") from None
    root = SimpleNamespace()
    for dest, value in flat.items():
        node = root
        *parents, leaf = dest.split(".")
        for part in parents:
            node = node.__dict__.setdefault(part, SimpleNamespace())
        setattr(node, leaf, value)
    return root


def _canonical() -> dict[str, str]:
    """dest -> its first option string."""
    out: dict[str, str] = {}
    for entry in _snapshot():
        out.setdefault(entry["dest"], entry["options"][0])
    return out


def dest_of(flag: str) -> str:
    """The destination of one of OpenRLHF's exact option strings (e.g. ``--vllm.num_engines`` -> ``vllm.num_engines``)."""
    for entry in _snapshot():
        if flag in entry["options"]:
            return str(entry["dest"])
    raise KeyError(f"{flag} is not a flag of OpenRLHF 0.11.2's train_ppo_ray")


# -- the check -----------------------------------------------------------------------------------
def resolve(args: Sequence[str]) -> dict[str, str]:
    """``{dest: canonical option}`` of every flag in ``args``, as OpenRLHF's parser resolves them.

    Raises :class:`ConfigError` for a flag OpenRLHF does not know, an ambiguous abbreviation or a
    missing value (argparse's own message).
    """
    try:
        named = vars(snapshot_parser(defaults=False).parse_args(list(args)))
    except _Refused as exc:
        raise ConfigError(f"openrlhf_args: OpenRLHF 0.11.2's train_ppo_ray refuses {' '.join(args)!r}: {exc}") from None
    canonical = _canonical()
    return {dest: canonical[dest] for dest in named}


def check_user_flags(args: Sequence[str], owned: dict[str, str]) -> None:
    """Raise :class:`ConfigError` if a flag of ``args`` is owned, bypasses the trainer or is ignored.

    ``owned`` maps each flag the runner sets to the config field it comes from.
    """
    if not args:
        return
    owned_dests = {dest_of(flag): (flag, source) for flag, source in owned.items()}
    spelled = {arg.split("=", 1)[0] for arg in args}
    for dest, option in resolve(args).items():
        said = f"openrlhf_args: {option}" + ("" if option in spelled else " (as OpenRLHF resolves the abbreviation)")
        if dest in owned_dests:
            flag, source = owned_dests[dest]
            raise ConfigError(
                f"{said} is set by the runner from {source}; change that instead (the flag table is in README.md, "
                "section Training on a GPU cluster)"
            )
        if dest in BYPASS:
            raise ConfigError(f"{said} is refused: {BYPASS[dest]}")
        if dest in IGNORED:
            raise ConfigError(f"{said} would be ignored: {IGNORED[dest]}")
        if dest.startswith(IGNORED_PREFIX):
            raise ConfigError(f"{said} would be ignored: {IGNORED_PREFIX_HINT}")


def bypassing(parsed: Any) -> list[str]:
    """The :data:`BYPASS` flags set in OpenRLHF's parsed (hierarchical) arguments: the launch's last check."""
    canonical = _canonical()
    found = []
    for dest in BYPASS:
        node = parsed
        for part in dest.split("."):
            node = getattr(node, part, None)
        if node not in (None, False):
            found.append(canonical[dest])
    return found


def _write_snapshot(source: Path) -> None:
    SNAPSHOT.write_text(json.dumps(flag_table_from_source(source), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT} from {source}")


if __name__ == "__main__":
    _write_snapshot(Path(sys.argv[1]))
