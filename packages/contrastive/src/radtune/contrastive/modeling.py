"""One interface over the two architectures radtune trains contrastively: `CLIPModel` and `DualEncoderModel`.

`load_contrastive(name_or_path)` opens either from a local folder or a Hub repo id and returns the model with its
`ContrastiveProcessor` (tokenizer + image processor). `towers(model)` and `is_head_parameter(model, name)` say which
parameters are the pretrained towers and which are the projection heads and the logit scale, for freezing and for
separate learning rates. `encode_images` / `encode_texts` give L2-normalised features for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from radtune.contrastive.dual_encoder import IMAGE_DIR, TEXT_DIR, DualEncoderModel, is_dual_encoder

ARCHITECTURES = ("clip", "dual-encoder")
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
# The parameter names (prefixes) of each architecture's heads: projections and the logit scale.
_HEADS = {
    "clip": ("visual_projection.", "text_projection.", "logit_scale"),
    "dual-encoder": ("image_projection.", "text_projection.", "logit_scale"),
}


@dataclass
class ContrastiveProcessor:
    """Tokenizer + image processor of a contrastive model; saves in the model's own layout."""

    tokenizer: object
    image_processor: object
    architecture: str

    def save_pretrained(self, save_directory: str | Path) -> None:
        folder = Path(save_directory)
        if self.architecture == "dual-encoder":
            self.tokenizer.save_pretrained(folder / TEXT_DIR)
            self.image_processor.save_pretrained(folder / IMAGE_DIR)
        else:
            self.tokenizer.save_pretrained(folder)
            self.image_processor.save_pretrained(folder)


def architecture_of(model: nn.Module) -> str:
    return "dual-encoder" if isinstance(model, DualEncoderModel) else "clip"


def load_processor(text_source: str | Path, image_source: str | Path, architecture: str) -> ContrastiveProcessor:
    from transformers import AutoImageProcessor, AutoTokenizer

    return ContrastiveProcessor(
        tokenizer=AutoTokenizer.from_pretrained(text_source),
        image_processor=AutoImageProcessor.from_pretrained(image_source),
        architecture=architecture,
    )


def _hub_repo_is_dual_encoder(repo_id: str) -> bool:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from radtune.common.hub import hub_errors
    from radtune.contrastive.dual_encoder import CONFIG_NAME

    with hub_errors(repo_id, filename=CONFIG_NAME):  # a mistyped local path gets a message, not a traceback
        try:
            hf_hub_download(repo_id, CONFIG_NAME)
        except EntryNotFoundError:
            return False
    return True


def load_contrastive(name_or_path: str | Path) -> tuple[nn.Module, ContrastiveProcessor]:
    """Open a trained contrastive model (a CLIP checkpoint or a saved dual encoder) with its processor.

    Args:
        name_or_path (`str` or `Path`): local folder or Hub repo id.
    """
    from transformers import CLIPModel

    from radtune.common.hub import check_path_or_repo, resolve_model_path

    # A mistyped local path fails at once, a name that is no Hub repo within seconds, both saying so.
    if check_path_or_repo(name_or_path) or _hub_repo_is_dual_encoder(str(name_or_path)):
        folder = resolve_model_path(name_or_path)
        if is_dual_encoder(folder):
            return DualEncoderModel.from_pretrained(folder), load_processor(folder / TEXT_DIR, folder / IMAGE_DIR,
                                                                            "dual-encoder")  # fmt: skip
        return CLIPModel.from_pretrained(folder), load_processor(folder, folder, "clip")
    # A Hub CLIP: let transformers fetch only the files it needs (the repo may also hold TF and Flax weights).
    return CLIPModel.from_pretrained(name_or_path), load_processor(name_or_path, name_or_path, "clip")


def towers(model: nn.Module) -> dict[str, nn.Module]:
    """The pretrained towers: `{"image": …, "text": …}`."""
    if isinstance(model, DualEncoderModel):
        return {"image": model.image_model, "text": model.text_model}
    return {"image": model.vision_model, "text": model.text_model}


def is_head_parameter(model: nn.Module, name: str) -> bool:
    """True for the projection heads and the logit scale (`name` as in `model.named_parameters()`)."""
    return name.startswith(_HEADS[architecture_of(model)])


def block_list(tower: nn.Module) -> tuple[str, nn.ModuleList]:
    """The tower's sequence of blocks: the `nn.ModuleList` that holds the most parameters (CLIP and BERT
    `encoder.layer(s)`, ResNet `encoder.stages`, Swin `encoder.layers`), with its name."""
    best, best_size = None, -1
    for name, module in tower.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    if best is None:
        raise ValueError(f"{type(tower).__name__} has no list of blocks to unfreeze")
    return best


def set_tower_trainable(tower: nn.Module, freeze: bool, unfreeze_last_n: int = 0) -> None:
    """Freeze a tower (or not), then unfreeze its last `unfreeze_last_n` blocks and whatever follows them (final
    norm, pooler: the parameters registered after the last block)."""
    if not freeze:
        tower.requires_grad_(True)
        return
    tower.requires_grad_(False)
    if unfreeze_last_n <= 0:
        return
    prefix, blocks = block_list(tower)
    if unfreeze_last_n > len(blocks):
        raise ValueError(f"cannot unfreeze the last {unfreeze_last_n} blocks: {type(tower).__name__} has {len(blocks)}")
    last_block = f"{prefix}.{len(blocks) - 1}."
    names = [name for name, _ in tower.named_parameters()]
    after = max(i for i, name in enumerate(names) if name.startswith(last_block)) + 1
    for block in list(blocks)[-unfreeze_last_n:]:
        block.requires_grad_(True)
    for _, parameter in list(tower.named_parameters())[after:]:
        parameter.requires_grad_(True)


def _features(output) -> torch.Tensor:
    # transformers 5 returns CLIP's projected features as the `pooler_output` of a model output.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def encode_images(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalised image features."""
    return F.normalize(_features(model.get_image_features(pixel_values=pixel_values)), dim=-1)


def encode_texts(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """L2-normalised text features."""
    return F.normalize(_features(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)), dim=-1)
