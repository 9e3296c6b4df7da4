"""A dual encoder: any BERT-family text model and any `AutoModel` image backbone, each with a linear projection
head into one shared space, and a learnable logit scale (CLIP's temperature).

The defaults pair BioBERT (`dmis-lab/biobert-v1.1`) with a ResNet-50 (`microsoft/resnet-50`). A saved model is a
plain folder that can be pushed to and pulled from the Hub:

    dual_encoder_config.json   projection size, pooling, feature sizes, where the towers came from
    heads.safetensors          text_projection.weight, image_projection.weight, logit_scale
    text/                      the text tower and its tokenizer (AutoModel / AutoTokenizer folder)
    image/                     the image tower and its image processor (AutoModel / AutoImageProcessor folder)

The model speaks CLIPModel's language (`get_text_features`, `get_image_features`, `forward(input_ids,
pixel_values, attention_mask)` → `image_embeds`, `text_embeds`, `logits_per_image`, `logits_per_text`,
`logit_scale`), so training and evaluation treat both the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

CONFIG_NAME = "dual_encoder_config.json"
HEADS_NAME = "heads.safetensors"
TEXT_DIR = "text"
IMAGE_DIR = "image"
DEFAULT_TEXT_MODEL = "dmis-lab/biobert-v1.1"
DEFAULT_IMAGE_MODEL = "microsoft/resnet-50"
POOLINGS = ("cls", "mean")


@dataclass
class DualEncoderConfig:
    """What a saved dual encoder needs besides its two towers.

    Args:
        projection_dim (`int`, *optional*, defaults to `512`): size of the shared embedding space.
        text_pooling (`str`, *optional*, defaults to `"mean"`): `"mean"` (masked mean of the last hidden states)
            or `"cls"` (the first token's hidden state).
        text_embed_dim (`int`): hidden size of the text tower.
        image_embed_dim (`int`): pooled feature size of the image tower.
        logit_scale_init (`float`, *optional*, defaults to `log(1/0.07)`): initial log logit scale.
        text_model (`str`, *optional*): where the text tower came from (for the model card).
        image_model (`str`, *optional*): where the image tower came from.
    """

    text_embed_dim: int
    image_embed_dim: int
    projection_dim: int = 512
    text_pooling: str = "mean"
    logit_scale_init: float = math.log(1 / 0.07)
    text_model: str | None = None
    image_model: str | None = None
    architecture: str = "radtune-dual-encoder"

    def __post_init__(self):
        if self.text_pooling not in POOLINGS:
            raise ValueError(f"text_pooling must be one of {POOLINGS}, got {self.text_pooling!r}")
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {self.projection_dim}")

    # The Trainer's loggers (TensorBoard, W&B, …) record `model.config` through these two, as for a
    # transformers config.
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


@dataclass
class DualEncoderOutput(ModelOutput):
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


def image_feature_size(config) -> int:
    """Pooled feature size of an image backbone from its config (ResNet/ConvNeXt `hidden_sizes[-1]`, ViT-style
    `hidden_size`)."""
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    size = getattr(config, "hidden_size", None)
    if size is None:
        raise ValueError(f"cannot tell the feature size of a {type(config).__name__} image backbone")
    return int(size)


def _without_pooler(text_folder: Path) -> dict:
    """`{"add_pooling_layer": False}` for a saved text tower whose class takes it (BERT, RoBERTa, …), else `{}`.

    The dual encoder drops the text tower's pooler, so a saved tower has none: built with one, transformers would
    report its weights as newly initialised on every load.
    """
    import inspect

    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(text_folder)
    model_class = MODEL_MAPPING[type(config)] if type(config) in MODEL_MAPPING else None
    takes_it = model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return {"add_pooling_layer": False} if takes_it else {}


def is_dual_encoder(path: str | Path) -> bool:
    """True for a local folder written by `DualEncoderModel.save_pretrained`."""
    return (Path(path) / CONFIG_NAME).is_file()


class DualEncoderModel(nn.Module):
    """Text tower + image tower + linear projection heads + learnable logit scale.

    Args:
        text_model (`PreTrainedModel`): a BERT-family encoder (`AutoModel`).
        image_model (`PreTrainedModel`): an image backbone (`AutoModel`) returning `pooler_output` or
            `last_hidden_state`.
        config (`DualEncoderConfig`): sizes and pooling.
    """

    def __init__(self, text_model: nn.Module, image_model: nn.Module, config: DualEncoderConfig):
        super().__init__()
        self.config = config
        # BERT's pooler is not used (the text is pooled from the hidden states): drop it, so that no parameter
        # goes without a gradient (DDP would stop on it) and none is saved for nothing.
        if isinstance(getattr(text_model, "pooler", None), nn.Module):
            text_model.pooler = None
        self.text_model = text_model
        self.image_model = image_model
        self.text_projection = nn.Linear(config.text_embed_dim, config.projection_dim, bias=False)
        self.image_projection = nn.Linear(config.image_embed_dim, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))

    # Construction and persistence

    @classmethod
    def from_text_image_pretrained(
        cls,
        text_model_name_or_path: str = DEFAULT_TEXT_MODEL,
        image_model_name_or_path: str = DEFAULT_IMAGE_MODEL,
        projection_dim: int = 512,
        text_pooling: str = "mean",
        **from_pretrained_kwargs,
    ) -> DualEncoderModel:
        """A new dual encoder from two pretrained towers (local folders or Hub ids) and fresh heads."""
        from transformers import AutoModel

        text_model = AutoModel.from_pretrained(text_model_name_or_path, **from_pretrained_kwargs)
        image_model = AutoModel.from_pretrained(image_model_name_or_path, **from_pretrained_kwargs)
        config = DualEncoderConfig(
            text_embed_dim=text_model.config.hidden_size,
            image_embed_dim=image_feature_size(image_model.config),
            projection_dim=projection_dim,
            text_pooling=text_pooling,
            text_model=str(text_model_name_or_path),
            image_model=str(image_model_name_or_path),
        )
        return cls(text_model, image_model, config)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **from_pretrained_kwargs) -> DualEncoderModel:
        """Load a dual encoder saved with `save_pretrained`, from a local folder or a Hub repo id."""
        from transformers import AutoModel

        from radtune.common.hub import resolve_model_path

        folder = resolve_model_path(name_or_path)
        if not is_dual_encoder(folder):
            raise ValueError(f"{name_or_path} is not a saved dual encoder: {CONFIG_NAME} is missing")
        config = DualEncoderConfig(**json.loads((folder / CONFIG_NAME).read_text()))
        text_model = AutoModel.from_pretrained(folder / TEXT_DIR, **_without_pooler(folder / TEXT_DIR),
                                               **from_pretrained_kwargs)  # fmt: skip
        image_model = AutoModel.from_pretrained(folder / IMAGE_DIR, **from_pretrained_kwargs)
        model = cls(text_model, image_model, config)
        model.load_heads(folder)
        return model

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "text_projection.weight": self.text_projection.weight,
            "image_projection.weight": self.image_projection.weight,
            "logit_scale": self.logit_scale,
        }

    def load_heads(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        heads = load_file(str(Path(folder) / HEADS_NAME))
        with torch.no_grad():
            for name, tensor in self.head_state_dict().items():
                tensor.copy_(heads[name])

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """Write the config, the heads and both towers (extra keyword arguments go to the towers'
        `save_pretrained`)."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        kwargs.pop("state_dict", None)  # the Trainer passes one; each part saves its own weights
        (folder / CONFIG_NAME).write_text(self.config.to_json_string())
        save_file({name: t.detach().cpu().contiguous() for name, t in self.head_state_dict().items()},
                  str(folder / HEADS_NAME), metadata={"format": "pt"})  # fmt: skip
        self.text_model.save_pretrained(folder / TEXT_DIR, **kwargs)
        self.image_model.save_pretrained(folder / IMAGE_DIR, **kwargs)

    # Forward

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected (not normalised) text features, `(batch, projection_dim)`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.text_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.text_projection(pooled)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) image features, `(batch, projection_dim)`."""
        outputs = self.image_model(pixel_values=pixel_values)
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            hidden = outputs.last_hidden_state
            pooled = hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden[:, 0]
        return self.image_projection(pooled.flatten(1))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_unused,
    ) -> DualEncoderOutput:
        image_embeds = F.normalize(self.get_image_features(pixel_values), dim=-1)
        text_embeds = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        scale = self.logit_scale.exp()
        logits_per_text = scale * text_embeds @ image_embeds.T
        return DualEncoderOutput(
            logits_per_image=logits_per_text.T,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            logit_scale=self.logit_scale,
        )

