"""The launch configs under training/accelerate/ load as accelerate reads them and describe plugins
accelerate can build for the Janus model (checked on the CPU: nothing is launched)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

from reasongen.tiny import build_tiny

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "accelerate"
# How `accelerate launch` renames the config file's FSDP keys into the plugin's arguments.
FSDP_ARGS = {
    "fsdp_version": "fsdp_version",
    "fsdp_auto_wrap_policy": "auto_wrap_policy",
    "fsdp_transformer_layer_cls_to_wrap": "transformer_cls_names_to_wrap",
    "fsdp_reshard_after_forward": "reshard_after_forward",
    "fsdp_state_dict_type": "state_dict_type",
    "fsdp_cpu_ram_efficient_loading": "cpu_ram_efficient_loading",
    "fsdp_offload_params": "cpu_offload",
}


@pytest.mark.parametrize("name", ["multi_gpu", "fsdp", "deepspeed_zero2"])
def test_config_loads_as_accelerate_reads_it(name: str) -> None:
    # ClusterConfig refuses keys accelerate does not know (a misspelt option would be ignored).
    cfg = ClusterConfig.from_yaml_file(str(CONFIGS / f"{name}.yaml"))
    expected = {"multi_gpu": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP,
                "deepspeed_zero2": DistributedType.DEEPSPEED}  # fmt: skip
    assert cfg.distributed_type == expected[name]
    assert cfg.mixed_precision == "bf16" and cfg.num_processes == 8 and not cfg.use_cpu


def _fsdp_state(result_dir: str) -> None:
    """One process of a two-process CPU launch that asks accelerate for FSDP."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    with mock.patch.dict(os.environ, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}):
        acc = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
        (Path(result_dir) / f"rank{acc.process_index}").write_text(str(acc.distributed_type))
    AcceleratorState._reset_state(reset_partial_state=True)


def test_accelerate_does_not_shard_with_fsdp_on_the_cpu(tmp_path: Path) -> None:
    # Why the two-process equivalence test (test_grpo_distributed.py) and the two-process CPU
    # runs (`torchrun --standalone --nproc_per_node 2 -m training.grpo ...`) are DDP only:
    # accelerate enables FSDP for accelerator devices (GPU, NPU, XPU, ...) and leaves a CPU launch
    # as MULTI_CPU (DDP over gloo) even when FSDP is asked for. If this starts failing, accelerate
    # has learnt CPU FSDP: add an FSDP variant of the equivalence test.
    from accelerate import debug_launcher

    debug_launcher(_fsdp_state, args=(str(tmp_path),), num_processes=2)
    assert {p.read_text() for p in tmp_path.iterdir()} == {str(DistributedType.MULTI_CPU)}


def test_fsdp_config_builds_a_plugin_that_wraps_the_janus_decoder_layers() -> None:
    section = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    assert set(section) <= set(FSDP_ARGS), f"unmapped FSDP keys: {set(section) - set(FSDP_ARGS)}"
    kwargs = {FSDP_ARGS[k]: v for k, v in section.items()}
    layers = kwargs["transformer_cls_names_to_wrap"].split(",")
    kwargs["transformer_cls_names_to_wrap"] = layers
    with mock.patch.dict(os.environ):  # the plugin exports FSDP_* variables; keep them out of other tests
        plugin = FullyShardedDataParallelPlugin(**kwargs)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    model, _ = build_tiny()
    present = {type(m).__name__ for m in model.modules()}
    assert set(layers) <= present, f"{layers} not in the Janus model's modules"


def test_deepspeed_config_builds_a_zero2_plugin() -> None:
    section = yaml.safe_load((CONFIGS / "deepspeed_zero2.yaml").read_text())["deepspeed_config"]
    with mock.patch.dict(os.environ):
        plugin = DeepSpeedPlugin(**section)
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == 2
    assert zero["offload_optimizer"]["device"] == "none" and zero["offload_param"]["device"] == "none"
