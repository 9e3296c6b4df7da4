"""Checkpoints a run resumes from: which ones are complete, and loading their weights back exactly, in place.

Three defects of the Trainer's own resume path, fixed here once for every radtune trainer:

- Since transformers 5, `save_pretrained` writes weights in the checkpoint (Hub) format: the model's weight
  conversion mapping is reverted on save (LLaVA's `model.language_model.*` is saved as `language_model.*`), and
  `from_pretrained` applies it again on load. `Trainer._load_from_checkpoint` and `_load_best_model` read the file
  with a plain `load_state_dict(strict=False)` instead, so a fully fine-tuned LLaVA resumes from its initial weights
  with only a "missing keys" warning (transformers issues 43701, 48805). `CheckpointLoadingMixin` loads a full
  model's weights through the same mapping, and refuses a checkpoint that does not cover the model.
- Resuming a PEFT adapter goes through `PeftModel.load_adapter`, which casts the adapter to float32: a QLoRA run,
  whose adapter TRL trains in bfloat16, goes on in another precision. `CheckpointLoadingMixin` loads it in place.
- A run killed while a checkpoint is being written leaves a `checkpoint-N` without `trainer_state.json` (the Trainer
  writes it last) or with truncated weights; `checkpoint_problem` says what is wrong with one, and
  `radtune.common.run.resume_checkpoint` skips it in favour of the previous complete one.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Files of the model's weights in a checkpoint (full model, sharded, adapter, radtune's dual encoder heads and towers).
_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json")
_TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
_SHARDED_PREFIXES = ("global_step", "pytorch_model_fsdp")


def checkpoints_newest_first(folder: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of a run's `output_dir`, highest step first (none: an empty list)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (m := _CHECKPOINT_RE.match(path.name))]  # fmt: skip
    return [path for _, path in sorted(found, reverse=True)]


def _safetensors_problem(path: Path) -> str | None:
    """Why a `.safetensors` file is unreadable (a truncated write), else `None`: its header must parse and its size
    must be exactly what the header declares."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{path.name} is truncated"
        (header_size,) = struct.unpack("<Q", prefix)
        if 8 + header_size > size:
            return f"{path.name} is truncated"
        try:
            header = json.loads(handle.read(header_size))
            ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return f"{path.name} has an unreadable header"
    if 8 + header_size + max(ends, default=0) != size:
        return f"{path.name} is truncated"
    return None


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, in a few words, or `None` when it is complete.

    Complete: `trainer_state.json` (the Trainer writes it last) parses, at least one weights file is there (full
    model, shards, adapter, or a DeepSpeed/FSDP folder), and every safetensors file and shard is whole.
    """
    checkpoint = Path(checkpoint)
    state = checkpoint / TRAINER_STATE_NAME
    if not state.is_file():
        return f"no {TRAINER_STATE_NAME}"
    try:
        json.loads(state.read_text())
    except ValueError:
        return f"{TRAINER_STATE_NAME} is truncated"
    files = [path for path in checkpoint.rglob("*") if path.is_file()]
    weights = [path for path in files if path.name.endswith(_WEIGHT_SUFFIXES) or path.name in _TORCH_WEIGHTS]
    # DeepSpeed (`global_step*`) and FSDP (`pytorch_model_fsdp_*`) write folders of their own
    sharded = [path for path in checkpoint.iterdir() if path.is_dir() and path.name.startswith(_SHARDED_PREFIXES)]
    if not weights and not sharded:
        return "no model weights"
    for path in weights:
        if path.name.endswith(".index.json"):
            try:
                shards = set(json.loads(path.read_text())["weight_map"].values())
            except (ValueError, KeyError):
                return f"{path.name} is truncated"
            missing = sorted(shard for shard in shards if not (path.parent / shard).is_file())
            if missing:
                return f"shard {missing[0]} is missing"
        elif path.suffix == ".safetensors" and (problem := _safetensors_problem(path)) is not None:
            return problem
    return None


def _read_weights(folder: Path) -> dict:
    """The state dict of a `save_pretrained` folder: one file or shards, safetensors or torch."""
    import torch
    from safetensors.torch import load_file

    for index_name, load in (("model.safetensors.index.json", lambda p: load_file(p, device="cpu")),
                             ("pytorch_model.bin.index.json",
                              lambda p: torch.load(p, map_location="cpu", weights_only=True))):  # fmt: skip
        index = folder / index_name
        if index.is_file():
            state_dict = {}
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                state_dict.update(load(str(folder / shard)))
            return state_dict
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"), device="cpu")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise ValueError(f"resume_from_checkpoint: {folder} holds no model weights (model.safetensors or shards)")


def has_full_weights(folder: str | Path) -> bool:
    """Whether a folder holds a full model's weights as `save_pretrained` writes them (not an adapter)."""
    names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    return any((Path(folder) / name).is_file() for name in names)


def _conversions_as_saved(model) -> list:
    """The weight transforms `save_pretrained` reverted when it wrote this model (transformers'
    `revert_weight_conversion` picks them the same way): the ones `from_pretrained` used, else the model's
    registered mapping without legacy renamings and prefix changes."""
    from copy import deepcopy

    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import PrefixChange

    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:
        conversions = [c for c in get_model_conversion_mapping(model, add_legacy=False)
                       if not isinstance(c, PrefixChange)]  # fmt: skip
    return deepcopy(list(conversions))


def load_model_weights(model, folder: str | Path) -> None:
    """Load the weights that `save_pretrained` wrote into `folder` back into `model`, in place.

    Keys are renamed from the checkpoint format to the model's own through the model's weight conversion mapping, as
    `from_pretrained` does; values are copied into the existing parameters (their `requires_grad`, ties and
    devices stay). Weights tied to another one (`lm_head.weight`) may be absent, as `save_pretrained` drops them.

    Raises:
        `ValueError`: the checkpoint misses weights of the model or holds weights the model does not have (another
            model's checkpoint), or needs a weight conversion other than renaming.
    """
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    folder = Path(folder)
    state_dict = _read_weights(folder)
    conversions = _conversions_as_saved(model)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    expected = model.state_dict()
    renamed = {}
    for key, tensor in state_dict.items():
        new_key, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, expected)
        if converter is not None:
            raise ValueError(f"resume_from_checkpoint: {folder} stores {key!r} in a converted layout radtune cannot "
                             "load back in place; resume with the model's own Trainer or start afresh")  # fmt: skip
        renamed[new_key] = tensor
    result = model.load_state_dict(renamed, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    ignored = set(getattr(model, "_keys_to_ignore_on_save", None) or ())
    missing = [key for key in result.missing_keys if key not in tied and key not in ignored]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"resume_from_checkpoint: {folder} does not match the model ({len(missing)} weights missing, e.g. "
            f"{missing[:2]}; {len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:2]}); was it "
            "written by this run's model?"
        )
    if tied:
        model.tie_weights()


def has_adapter_weights(folder: str | Path) -> bool:
    """Whether a folder holds one PEFT adapter's weights at its top level (`adapter_model.safetensors|bin`)."""
    return any((Path(folder) / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin"))


def load_adapter_weights(model, folder: str | Path) -> None:
    """Load the active adapter's weights that `PeftModel.save_pretrained` wrote into `folder` back into `model`,
    in place: the adapter keeps its dtype (TRL trains QLoRA adapters in bfloat16, while the Trainer's own
    `load_adapter` casts them to float32), its `requires_grad` and its device.

    Raises:
        `ValueError`: the checkpoint misses weights of the adapter, or holds weights the model does not have.
    """
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    adapter = model.active_adapter
    result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"), adapter_name=adapter)
    missing = [key for key in result.missing_keys if f".{adapter}." in key]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"resume_from_checkpoint: the adapter in {folder} does not match the model's ({len(missing)} weights "
            f"missing, e.g. {missing[:2]}; {len(result.unexpected_keys)} unexpected, e.g. "
            f"{result.unexpected_keys[:2]}); was it written by this run's model?"
        )


def _is_peft_model(model) -> bool:
    try:
        from peft import PeftMixedModel, PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel | PeftMixedModel)


class CheckpointLoadingMixin:
    """Put before a `transformers.Trainer` subclass: resuming (`train(resume_from_checkpoint=...)`) and
    `load_best_model_at_end` restore the weights exactly, in place: a full model's through its weight conversion
    mapping (`load_model_weights`), a PEFT adapter's in its training dtype (`load_adapter_weights`). DeepSpeed and
    FSDP checkpoints, and several adapters, keep the Trainer's own loading."""

    def _load_weights_in_place(self, model, checkpoint) -> bool:
        """Load `checkpoint` into `model` when radtune knows how; `False`: leave it to the Trainer."""
        from transformers import PreTrainedModel

        if not checkpoint or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return False
        if _is_peft_model(model):
            if len(model.peft_config) != 1 or not has_adapter_weights(checkpoint):
                return False
            load_adapter_weights(model, checkpoint)
            return True
        if isinstance(model, PreTrainedModel) and has_full_weights(checkpoint):
            load_model_weights(model, checkpoint)
            return True
        return False

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if not self._load_weights_in_place(model, resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        if not self._load_weights_in_place(self.model, self.state.best_model_checkpoint):
            super()._load_best_model()
