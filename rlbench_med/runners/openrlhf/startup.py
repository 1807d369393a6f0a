"""What the launch checks before OpenRLHF starts Ray work, and the bound on every startup wait.

OpenRLHF 0.11.2's ``train_ppo_ray.train()`` waits without a timeout for placement groups
(``ray.get(pg.ready())``, in ``train`` and in ``create_vllm_engines``), for actors to start and for
models to load: on a Ray cluster that lacks the GPUs it hangs forever. The launch therefore

1. computes the GPUs the parsed arguments need (:func:`gpus_needed`, the same layout rules as
   ``train()``) and compares them with the Ray cluster's (:func:`require_gpus`), failing at once
   with a one-line :class:`LaunchError`;
2. bounds every ``ray.get`` of the driver by ``startup_timeout_s`` until the trainer's ``fit``
   starts (:class:`BoundedWaits`); a timeout names what was waited for (a placement group and its
   bundles, the actors and the model they load, the vLLM engines, the trainer actor).

Training itself (``fit``) and the final save are not bounded: their length depends on the run.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Prefix of the one line the launch prints for an error the runner reports (see :func:`error_line`).
ERROR_MARK = "rlbench-med launch error: "


class LaunchError(RuntimeError):
    """A launch that cannot go on; the message is one line saying what is missing and what to do."""


#: Error texts that mean the code reached a CUDA call on a machine whose PyTorch has no GPU.
NO_CUDA = ("Torch not compiled with CUDA", "No CUDA GPUs are available", "Found no NVIDIA driver", "CUDA driver",
           "_cuda_setDevice", "_cuda_init")
#: Longest reason the launch prints (a Ray error can carry a whole remote traceback).
MAX_REASON = 600
_ACTOR_TITLE = re.compile(r"ray::([\w.]+)\(")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')


def _short(path: str) -> str:
    """``.../site-packages/openrlhf/utils/x.py`` -> ``openrlhf/utils/x.py``."""
    marker = "site-packages/"
    return path.split(marker, 1)[1] if marker in path else Path(path).name


def error_line(exc: BaseException) -> str:
    """The one line the launch prints last for ``exc`` (the runner finds it by :data:`ERROR_MARK`).

    A Ray task error is reported by the actor method that failed, the exception raised inside it
    (``cause``) and the last frame of OpenRLHF's code and the very last frame of the remote
    traceback; an error at a CUDA call says that this is the GPU boundary.
    """
    if isinstance(exc, LaunchError):
        text = str(exc)
    else:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            title = _ACTOR_TITLE.search(str(exc))
            frames = _FRAME.findall(str(getattr(exc, "traceback_str", "") or exc))
            ours = [f for f in frames if "openrlhf/" in f[0] or "rlbench_med/" in f[0]]
            where = " -> ".join(f"{_short(f[0])}:{f[1]} ({f[2]})" for f in ([ours[-1]] if ours else []) + frames[-1:])
            text = (f"{title.group(1) if title else 'a Ray actor'} failed: {type(cause).__name__}: {cause}"
                    + (f" at {where}" if where else ""))
        else:
            text = f"{type(exc).__name__}: {exc}"
        if any(marker in text for marker in NO_CUDA):
            text += " (the GPU boundary: OpenRLHF's DeepSpeed actors and vLLM engines need CUDA GPUs)"
    text = " ".join(text.split())
    return ERROR_MARK + (text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "...")


def find_error_line(log: Path, start: int = 0) -> str | None:
    """The reason after :data:`ERROR_MARK` in the last such line of ``log`` past byte ``start`` (None when absent)."""
    if not log.is_file():
        return None
    found = None
    with log.open(encoding="utf-8", errors="replace") as fh:
        fh.seek(start)
        for line in fh:
            if line.startswith(ERROR_MARK):
                found = line[len(ERROR_MARK) :].strip()
    return found


# -- GPUs ------------------------------------------------------------------------------------------
def gpus_needed(args: Any) -> tuple[int, str]:
    """GPUs the parsed ``train_ppo_ray`` arguments ask Ray for, and how they are split.

    Mirrors ``train()``: with ``--train.colocate_all`` the actor, reference, critic and vLLM
    engines share the actor's ``num_nodes x num_gpus_per_node`` bundles; otherwise each group
    has its own (the reference shares the actor's with ``--train.colocate_actor_ref``).
    """
    actor = args.actor.num_nodes * args.actor.num_gpus_per_node
    engines = (args.vllm.num_engines or 0) * args.vllm.tensor_parallel_size
    if args.train.colocate_all:
        return actor, f"actor, reference and vLLM engines colocated on {actor}"
    parts = [("actor", actor)]
    if args.algo.kl.init_coef > 0 and not args.train.colocate_actor_ref:
        parts.append(("reference", args.ref.num_nodes * args.ref.num_gpus_per_node))
    if args.critic.model_name_or_path:
        parts.append(("critic", args.critic.num_nodes * args.critic.num_gpus_per_node))
    if not args.reward.remote_url:
        parts.append(("reward model", args.reward.num_nodes * args.reward.num_gpus_per_node))
    if engines:
        parts.append(("vLLM", engines))
    return sum(n for _, n in parts), " + ".join(f"{n} {name}" for name, n in parts)


def require_gpus(args: Any, cluster_gpus: float, where: str) -> None:
    """Raise :class:`LaunchError` unless ``cluster_gpus`` covers :func:`gpus_needed`."""
    needed, split = gpus_needed(args)
    if cluster_gpus + 1e-9 < needed:
        raise LaunchError(
            f"the plan needs {needed} GPU(s) ({split}) but the Ray cluster {where} has {cluster_gpus:g}; "
            "run on GPU machines (a Ray cluster of them with --set ray_address=auto) or lower "
            "gpus_per_node / vllm_num_engines (colocate=false: every group needs its own GPUs)"
        )


# -- bounded waits ---------------------------------------------------------------------------------
#: What a wait from these functions of OpenRLHF is for, when its object refs carry no label.
CALLER_WAITS = {
    "create_vllm_engines": "the vLLM engines to start and load the model",
    "batch_vllm_engine_call": "the vLLM engines to start and load the model",
    "train": "OpenRLHF's actors to start",
}


@dataclass
class BoundedWaits:
    """``ray.get`` of the driver with ``timeout_s`` until :meth:`training_started` (0: no bound).

    ``labels`` names what each object ref stands for; :meth:`install` patches ``ray.get``,
    ``PlacementGroup.ready`` and ``RayActorGroup.async_init_model_from_pretrained`` so their refs
    are labelled.
    """

    timeout_s: float
    labels: dict[Any, str] = field(default_factory=dict)
    training: bool = False
    _get: Callable[..., Any] | None = None

    def install(self) -> None:
        import ray
        from openrlhf.trainer.ray.launcher import RayActorGroup
        from ray.util.placement_group import PlacementGroup

        self._get = ray.get
        ray.get = self.get  # type: ignore[assignment]
        ready = PlacementGroup.ready
        init = RayActorGroup.async_init_model_from_pretrained
        waits = self

        def labelled_ready(pg: Any) -> Any:
            ref = ready(pg)
            bundles = pg.bundle_specs
            first = dict(sorted(bundles[0].items())) if bundles else {}  # Ray returns the keys in varying order
            waits.labels[ref] = (
                f"a placement group of {len(bundles)} bundle(s) {first} "
                "(GPUs reserved in the Ray cluster)"
            )
            return ref

        def labelled_init(group: Any, *args: Any, **kwargs: Any) -> list[Any]:
            refs = init(group, *args, **kwargs)
            name = getattr(group.ray_actor_type, "__name__", None) or type(group.ray_actor_type).__name__
            model = args[1] if len(args) > 1 and isinstance(args[1], str) else "the model"
            for ref in refs:
                waits.labels[ref] = f"{len(refs)} {name}(s) to start (DeepSpeed) and load {model}"
            return refs

        PlacementGroup.ready = labelled_ready  # type: ignore[method-assign]
        RayActorGroup.async_init_model_from_pretrained = labelled_init  # type: ignore[method-assign]

    def training_started(self) -> None:
        """From now on waits are the training's own and are not bounded."""
        self.training = True

    def describe(self, refs: Any, caller: str) -> str:
        items = refs if isinstance(refs, (list, tuple)) else [refs]
        for ref in items:
            label = self.labels.get(ref) if _hashable(ref) else None
            if label:
                return label
        return CALLER_WAITS.get(caller, f"a Ray call of OpenRLHF's {caller}")

    def get(self, object_refs: Any, *, timeout: float | None = None, **kwargs: Any) -> Any:
        assert self._get is not None, "BoundedWaits.install() was not called"
        if self.training or timeout is not None or self.timeout_s <= 0:
            return self._get(object_refs, timeout=timeout, **kwargs)
        from ray.exceptions import GetTimeoutError

        try:
            return self._get(object_refs, timeout=self.timeout_s, **kwargs)
        except GetTimeoutError:
            frame = sys._getframe(1)
            caller = frame.f_code.co_name
            where = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
            raise LaunchError(
                f"waited {self.timeout_s:g} s for {self.describe(object_refs, caller)} ({where}); the Ray cluster "
                "may lack the resources or a worker may be stuck (see the Ray logs); raise startup_timeout_s "
                "if the model needs longer to load"
            ) from None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
