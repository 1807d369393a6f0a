"""The estimator contract: inputs, outputs, the ``Estimator`` base class and the estimator table.

Every advantage estimator has one signature, ``AdvantageInputs -> AdvantageOutput``. It declares
the optional inputs it needs (``requires``), the smallest prompt group it accepts
(``min_group_size``), a one-line ``description`` and a small frozen ``Config`` dataclass whose
fields can be overridden from a spec string: ``make_estimator("drpo:k_max=3,kl_damping=false")``.

Shapes: ``B`` rollouts (prompts x rollouts per prompt, in any order), ``T`` response tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from rlbench_med.registry import Registry, RegistryError
from rlbench_med.typed_config import apply_overrides, field_names, parse_spec

#: The optional inputs an estimator may declare in ``requires``.
OPTIONAL_INPUTS = ("token_rewards", "values", "baseline_rewards", "old_logprobs", "ref_logprobs")
#: The float inputs checked for NaN/inf on construction (``[B]`` ones everywhere, ``[B, T]`` ones on
#: response tokens).
FLOAT_INPUTS = ("rewards", *OPTIONAL_INPUTS)


class InputError(ValueError):
    """Advantage inputs that an estimator cannot use; the message names the input and the fix."""


@dataclass(frozen=True)
class AdvantageInputs:
    """One batch of scored rollouts.

    Attributes:
        rewards: ``[B]`` float, outcome reward of each rollout.
        response_mask: ``[B, T]``, non-zero (1.0) on response tokens.
        group_ids: ``[B]`` int64; rollouts of the same prompt share an id.
        domains: ``[B]`` int64 index into ``domain_names``.
        domain_names: the name of every domain index.
        token_rewards: ``[B, T]`` dense rewards (e.g. KL-in-reward shaping), optional.
        values: ``[B, T]`` critic values (``ppo``), optional.
        baseline_rewards: ``[B]`` reward of the greedy rollout of the same prompt (``remax``).
        old_logprobs: ``[B, T]`` log-probabilities under the sampling policy (DRPO KL damping).
        ref_logprobs: ``[B, T]`` log-probabilities under the reference policy.

    Checked once, on construction: shapes, dtypes, the domain index range, and that every float
    input is finite (``rewards`` and ``baseline_rewards`` everywhere, the ``[B, T]`` inputs on
    response tokens; entries off ``response_mask`` are padding and may hold anything).
    """

    rewards: Tensor
    response_mask: Tensor
    group_ids: Tensor
    domains: Tensor
    domain_names: tuple[str, ...]
    token_rewards: Tensor | None = None
    values: Tensor | None = None
    baseline_rewards: Tensor | None = None
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None

    def __post_init__(self) -> None:
        if self.rewards.dim() != 1:
            raise InputError(f"rewards must be a [B] tensor, got shape {tuple(self.rewards.shape)}")
        if not self.rewards.is_floating_point():
            raise InputError(f"rewards must be a float tensor, got {self.rewards.dtype}")
        b = self.rewards.shape[0]
        if self.response_mask.dim() != 2 or self.response_mask.shape[0] != b:
            raise InputError(
                f"response_mask must be [B, T] with B={b} (the length of rewards), "
                f"got shape {tuple(self.response_mask.shape)}"
            )
        for name in ("group_ids", "domains"):
            ids = getattr(self, name)
            if ids.shape != (b,):
                raise InputError(f"{name} must be a [B] tensor with B={b}, got shape {tuple(ids.shape)}")
            if ids.dtype not in (torch.int64, torch.int32):
                raise InputError(f"{name} must be an int64 tensor, got {ids.dtype}")
        if b:
            lo, hi = int(self.domains.min()), int(self.domains.max())
            if lo < 0 or hi >= len(self.domain_names):
                raise InputError(
                    f"domains holds index {lo if lo < 0 else hi}, outside domain_names "
                    f"(length {len(self.domain_names)}: {self.domain_names})"
                )
        shape_2d = tuple(self.response_mask.shape)
        for name in ("token_rewards", "values", "old_logprobs", "ref_logprobs"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape_2d:
                raise InputError(f"{name} must have the shape of response_mask {shape_2d}, got {tuple(value.shape)}")
        if self.baseline_rewards is not None and tuple(self.baseline_rewards.shape) != (b,):
            raise InputError(f"baseline_rewards must be a [B] tensor with B={b}, got {tuple(self.baseline_rewards.shape)}")
        for name in FLOAT_INPUTS:
            value = getattr(self, name)
            if value is not None:
                self._check_finite(name, value)

    def _check_finite(self, name: str, value: Tensor) -> None:
        """Raise :class:`InputError` at the first NaN/inf of ``value``: anywhere in a ``[B]`` input,
        on response tokens in a ``[B, T]`` one."""
        # NaN and inf propagate through addition, so a finite sum proves every element finite at
        # the cost of one sum; the elementwise check runs only for a bad value or a sum past the
        # dtype's range.
        if math.isfinite(float(value.sum())):
            return
        bad = ~torch.isfinite(value)
        per_token = value.dim() == 2
        if per_token:
            bad &= self.on_response
        if not bool(bad.any()):
            return
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        index = ", ".join(map(str, where))
        rule = "must be finite wherever response_mask is set" if per_token else "must be finite"
        raise InputError(
            f"{name}[{index}] is {float(value[where])}; {name} {rule} (fix what produced it, or drop the rollout)"
        )

    @cached_property
    def on_response(self) -> Tensor:
        """``[B, T]`` bool, True on response tokens (computed once per batch)."""
        return self.response_mask.bool()

    @cached_property
    def mask(self) -> Tensor:
        """``[B, T]`` response mask as 0/1 in the dtype of ``rewards`` (computed once per batch)."""
        # Compared straight into the float buffer: one pass, no intermediate bool tensor.
        out = torch.empty(self.response_mask.shape, dtype=self.rewards.dtype, device=self.response_mask.device)
        return torch.ne(self.response_mask, 0, out=out)

    @cached_property
    def groups(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(ids, index, counts)`` of ``group_ids``: the distinct ids ascending, the dense group
        index of every rollout and the rollouts per group (computed once per batch)."""
        ids, index, counts = torch.unique(self.group_ids, return_inverse=True, return_counts=True)
        return ids, index, counts


@dataclass
class AdvantageOutput:
    """What an estimator returns.

    Attributes:
        advantages: ``[B, T]``, zero off the response mask.
        returns: ``[B, T]``, the regression target of a critic (``ppo``: A + V before whitening;
            REINFORCE++: the discounted return; outcome estimators: the advantages themselves).
        diagnostics: scalar statistics, logged by the runner as ``adv/<key>``.
    """

    advantages: Tensor
    returns: Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EmptyConfig:
    """An estimator without options."""


class Estimator:
    """Base class: subclasses set ``Config``, ``description`` and implement :meth:`compute`.

    ``__call__`` checks the declared ``requires`` and ``min_group_size`` once, then calls
    :meth:`compute`. Stateless estimators keep the default ``state_dict`` (an empty dict).
    """

    Config: ClassVar[type] = EmptyConfig
    description: ClassVar[str] = ""
    min_group_size: ClassVar[int] = 1
    name: str = ""

    def __init__(self, config: Any | None = None, *, name: str | None = None) -> None:
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.name = name or type(self).name or type(self).__name__.lower()

    @property
    def requires(self) -> frozenset[str]:
        """Optional inputs this estimator needs (a subset of :data:`OPTIONAL_INPUTS`)."""
        return frozenset()

    def __call__(self, inputs: AdvantageInputs) -> AdvantageOutput:
        device = inputs.rewards.device
        if device.type == "cpu":
            self.check_inputs(inputs)
            return self.compute(inputs)
        # The group statistics and clustering are small, branchy work that runs on the CPU (as in
        # OpenRLHF's experience maker); results go back to the caller's device.
        on_cpu = _to_device(inputs, torch.device("cpu"))
        self.check_inputs(on_cpu)
        out = self.compute(on_cpu)
        return AdvantageOutput(
            advantages=out.advantages.to(device), returns=out.returns.to(device), diagnostics=out.diagnostics
        )

    def check_inputs(self, inputs: AdvantageInputs) -> None:
        """Raise :class:`InputError` for a missing required input or a too-small prompt group."""
        for key in sorted(self.requires):
            if getattr(inputs, key) is None:
                raise InputError(
                    f"estimator {self.name!r} requires the input {key!r}, which is None; "
                    f"the runner must supply it (or pick an estimator that does not need it)"
                )
        if self.min_group_size > 1 and inputs.rewards.numel():
            ids, _, counts = inputs.groups
            small = counts < self.min_group_size
            if bool(small.any()):
                first = int(torch.nonzero(small)[0, 0])
                raise InputError(
                    f"estimator {self.name!r} compares rollouts within a prompt group, but group "
                    f"{int(ids[first])} has {int(counts[first])} rollout(s) "
                    f"({int(small.sum())} such group(s)); set n_rollouts >= {self.min_group_size}"
                )

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State to restore with :meth:`load_state_dict` (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"estimator {self.name!r} is stateless; got state with keys {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


#: Every estimator, by name. Plugins add to it through the ``rlbench_med.algorithms`` entry-point
#: group or with :func:`register_estimator` in a module loaded by ``--plugin``.
ESTIMATORS: Registry[type[Estimator]] = Registry("estimator", entry_point_group="rlbench_med.algorithms")

E = TypeVar("E", bound=type[Estimator])


def register_estimator(name: str, registry: Registry[type[Estimator]] | None = None) -> Callable[[E], E]:
    """Class decorator: check the estimator's declaration and add it to ``ESTIMATORS`` as ``name``."""

    def add(cls: E) -> E:
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise RegistryError(f"estimator {name!r}: {cls!r} must be a subclass of rlbench_med.algorithms.Estimator")
        if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise RegistryError(f"estimator {name!r}: {cls.__name__}.Config must be a frozen dataclass")
        if not cls.description or "\n" in cls.description:
            raise RegistryError(f"estimator {name!r}: {cls.__name__}.description must be one non-empty line")
        if "name" not in cls.__dict__:
            cls.name = name
        (registry if registry is not None else ESTIMATORS).register(name, cls)
        return cls

    return add


def make_estimator(spec: str, registry: Registry[type[Estimator]] | None = None) -> Estimator:
    """Build an estimator from ``"name"`` or ``"name:key=value,key=value"``.

    Values are converted to the types of the estimator's ``Config`` fields; unknown names raise
    :class:`~rlbench_med.registry.RegistryError` (with "did you mean"), unknown keys and bad values
    :class:`~rlbench_med.typed_config.ConfigError` naming the key and the accepted fields.
    """
    name, overrides = parse_spec(spec)
    cls = (registry if registry is not None else ESTIMATORS).get(name)
    config = apply_overrides(cls.Config(), overrides, what=f"estimator {name!r}")
    return cls(config, name=name)


def list_estimators() -> list[str]:
    """Registered estimator names, sorted."""
    return ESTIMATORS.names()


def describe_estimator(name: str) -> str:
    """The one-line description of a registered estimator."""
    return ESTIMATORS.get(name).description


def config_fields(name: str) -> list[str]:
    """The option names accepted in ``name``'s spec string."""
    return field_names(ESTIMATORS.get(name).Config)


def _to_device(inputs: AdvantageInputs, device: torch.device) -> AdvantageInputs:
    """Copy of ``inputs`` with every tensor field moved to ``device``.

    ``inputs`` passed the checks of :class:`AdvantageInputs` when it was built, and moving tensors
    keeps their values, so the copy is assembled field by field (as the frozen dataclass's own
    ``__init__`` does) instead of checking every element a second time.
    """
    moved = object.__new__(AdvantageInputs)
    for f in dataclasses.fields(inputs):
        value = getattr(inputs, f.name)
        object.__setattr__(moved, f.name, value.to(device) if isinstance(value, torch.Tensor) else value)
    return moved
