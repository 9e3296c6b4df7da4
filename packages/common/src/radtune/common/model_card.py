"""Model cards for the models and adapters radtune publishes.

`build_model_card(folder, repo_id)` reads what the folder says about itself (`adapter_config.json` or `config.json`
for the base model, `metrics.json` for evaluation results) and returns a `huggingface_hub.ModelCard` whose YAML
carries `base_model`, `datasets`, `library_name`, `license`, `tags` (always `medical` and `radiology`) and, when
`metrics.json` is present, `model-index` results that the Hub shows as an evaluation table. Its body carries a
usage snippet for the kind of model the folder holds (`model_kind`, `usage_snippet`: a VLM and its adapters, ViT-GPT2,
BLIP captioning and VQA, CLIP, the dual encoder) that loads it from the repo, onto the real base model for an
adapter, and runs it on one image; `tests/common/test_card_snippets.py` executes every kind's.

`metrics.json` (written by radtune's evaluation commands):

    {"metrics": {"bleu_1": 0.31, ...},
     "ci": {"bleu_1": [0.29, 0.33], ...},                 # optional: bootstrap confidence intervals
     "meta": {"task": "captioning", "model": "...", "dataset": "...", "split": "test", "n": 500, "seed": 0}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

METRICS_FILE = "metrics.json"
ADAPTER_CONFIG = "adapter_config.json"
DEFAULT_TAGS = ("medical", "radiology")

# Base models published under their own terms, which bind what is trained from them: (repo id prefix, the card's
# license fields, the sentence the card's summary adds).
BASE_MODEL_TERMS = (
    ("google/medgemma-", {"license": "other", "license_name": "health-ai-developer-foundations",
                          "license_link": "https://developers.google.com/health-ai-developer-foundations/terms"},
     "MedGemma is released under Google's [Health AI Developer Foundations terms of use]"
     "(https://developers.google.com/health-ai-developer-foundations/terms), which also govern this derivative; "
     "the base model is gated on the Hub (accept its terms there to download it)."),
)  # fmt: skip

# radtune's task names → the Hub's task ids, for the `model-index` task type.
HUB_TASKS = {
    "vqa": "visual-question-answering",
    "captioning": "image-to-text",
    "caption": "image-to-text",
    "report-generation": "image-to-text",
    "zero-shot": "zero-shot-image-classification",
    "zero-shot-classification": "zero-shot-image-classification",
    "retrieval": "image-feature-extraction",
}

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")

_BODY = """
# {name}

{summary}

{results}
## Use it
{pull}
{usage}
Published with radtune, which fine-tunes vision-language models on medical images.
For research use only: not a medical device, and not validated for clinical decisions.
"""

# What each kind of model the card describes is loaded with (an adapter: its base, then `PeftModel`).
_MODEL_CLASSES = {
    "vlm": "AutoModelForImageTextToText",
    "vision-encoder-decoder": "VisionEncoderDecoderModel",
    "blip-caption": "BlipForConditionalGeneration",
    "blip-vqa": "BlipForQuestionAnswering",
    "clip": "CLIPModel",
    "other": "AutoModel",
}

# The usage of each kind after its `model = …` lines: plain transformers, the way radtune's own inference runs the
# model (for a VLM: the processor's chat template, tokenized by `apply_chat_template`, which adds the BOS only when
# the template wrote none: one BOS for every family, the same tokens as radtune's `processor(images=…, text=prompt)`
# for LLaVA-1.5). `{source}` is the repo id (or the local folder before a push).
_USAGE = {
    "vlm": """processor = AutoProcessor.from_pretrained("{source}")
image = Image.open("image.png").convert("RGB")  # your image
question = "Is there a pleural effusion?"
conversation = [{{"role": "user", "content": [{{"type": "image", "image": image}}, {{"type": "text", "text": question}}]}}]
# The processor's chat template renders the prompt radtune trained with; the BOS is added once.
inputs = processor.apply_chat_template(
    conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
)
output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(answer)
""",
    "vision-encoder-decoder": """tokenizer = AutoTokenizer.from_pretrained("{source}")
image_processor = AutoImageProcessor.from_pretrained("{source}")
image = Image.open("image.png").convert("RGB")  # your image
pixel_values = image_processor(images=image, return_tensors="pt").pixel_values
output = model.generate(pixel_values=pixel_values, max_new_tokens=64)
caption = tokenizer.decode(output[0], skip_special_tokens=True).strip()
print(caption)
""",
    "blip-caption": """processor = BlipProcessor.from_pretrained("{source}")
image = Image.open("image.png").convert("RGB")  # your image
inputs = processor(images=image, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=64)
caption = processor.decode(output[0], skip_special_tokens=True).strip()
print(caption)
""",
    "blip-vqa": """processor = BlipProcessor.from_pretrained("{source}")
image = Image.open("image.png").convert("RGB")  # your image
inputs = processor(images=image, text="Is there a pleural effusion?", return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=16)
answer = processor.decode(output[0], skip_special_tokens=True).strip()
print(answer)
""",
    "clip": """processor = CLIPProcessor.from_pretrained("{source}")
image = Image.open("image.png").convert("RGB")  # your image
texts = ["pleural effusion", "no acute cardiopulmonary process"]
inputs = processor(text=texts, images=image, return_tensors="pt", padding=True)
with torch.no_grad():
    outputs = model(**inputs)
image_embedding, text_embeddings = outputs.image_embeds[0], outputs.text_embeds
print(outputs.logits_per_image.softmax(dim=-1))
""",
    "dual-encoder": """image = Image.open("image.png").convert("RGB")  # your image
texts = ["pleural effusion", "no acute cardiopulmonary process"]
text_inputs = processor.tokenizer(texts, padding=True, return_tensors="pt")
pixel_values = processor.image_processor(images=image, return_tensors="pt").pixel_values
with torch.no_grad():
    outputs = model(input_ids=text_inputs["input_ids"], attention_mask=text_inputs["attention_mask"],
                    pixel_values=pixel_values)
image_embedding, text_embeddings = outputs.image_embeds[0], outputs.text_embeds
print(outputs.logits_per_image.softmax(dim=-1))
""",
    "other": "",
}

_IMPORTS = {
    "vlm": ["from PIL import Image", "from transformers import AutoModelForImageTextToText, AutoProcessor"],
    "vision-encoder-decoder": [
        "from PIL import Image",
        "from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel",
    ],
    "blip-caption": ["from PIL import Image", "from transformers import BlipForConditionalGeneration, BlipProcessor"],
    "blip-vqa": ["from PIL import Image", "from transformers import BlipForQuestionAnswering, BlipProcessor"],
    "clip": ["import torch", "from PIL import Image", "from transformers import CLIPModel, CLIPProcessor"],
    "dual-encoder": [
        "import torch",
        "from PIL import Image",
        "from radtune.contrastive.modeling import load_contrastive  # pip install radtune-contrastive",
    ],
    "other": ["from transformers import AutoModel"],
}

# radtune's training tasks (`run_info.json`'s `task`, `architecture`) → the kind of model they leave.
_RUN_KINDS = {
    ("vqa", None): "vlm",
    ("captioning", "vit-gpt2"): "vision-encoder-decoder",
    ("captioning", "blip"): "blip-caption",
    ("blip-vqa", None): "blip-vqa",
    ("contrastive", "clip"): "clip",
    ("contrastive", "dual-encoder"): "dual-encoder",
}

DUAL_ENCODER_CONFIG = "dual_encoder_config.json"
# Where `radtune.captioning.train` saves a ViT-GPT2 composed from --encoder and --decoder, inside the run folder.
COMPOSED_BASE = "base_model"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def read_metrics(folder: str | Path) -> dict | None:
    """The folder's `metrics.json` checked for the expected shape, or `None` when there is none.

    Raises:
        `ValueError`: the file exists but is not `{"metrics": {name: number}, "ci": {...}, "meta": {...}}`.
    """
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    data = _read_json(path)
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f'{path}: "metrics" must be a non-empty object of metric name → number')
    for name, value in metrics.items():
        # null is how metrics.json writes an undefined score (NaN, e.g. no open questions in the split).
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f'{path}: metric "{name}" must be a number or null, got {value!r}')
    if not isinstance(data.get("ci", {}), dict) or not isinstance(data.get("meta", {}), dict):
        raise ValueError(f'{path}: "ci" and "meta" must be objects')
    return data


def is_hub_id(name: str) -> bool:
    """Whether `name` can be a Hub repo id (and is not a path to an existing local folder)."""
    return bool(_HUB_ID.fullmatch(name)) and not Path(name).exists()


def find_base_model(folder: str | Path) -> str | None:
    """The base model named by `adapter_config.json` (adapters) or `config.json` (`_name_or_path`), if any."""
    folder = Path(folder)
    for filename, key in ((ADAPTER_CONFIG, "base_model_name_or_path"), ("config.json", "_name_or_path")):
        if (folder / filename).is_file():
            value = _read_json(folder / filename).get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _config_kind(config: dict) -> str:
    model_type = config.get("model_type")
    if model_type == "blip":
        return "blip-vqa" if "BlipForQuestionAnswering" in (config.get("architectures") or []) else "blip-caption"
    if model_type == "vision-encoder-decoder":
        return "vision-encoder-decoder"
    if model_type == "clip":
        return "clip"
    if "vision_config" in config and "text_config" in config:  # LLaVA and the other image-text-to-text families
        return "vlm"
    return "other"


def model_kind(folder: str | Path) -> str:
    """The kind of model a folder holds, which decides its card's usage snippet: `"vlm"` (LLaVA and the other
    image-text-to-text models), `"vision-encoder-decoder"` (ViT-GPT2), `"blip-caption"`, `"blip-vqa"`, `"clip"`,
    `"dual-encoder"`, or `"other"`.

    Read from `dual_encoder_config.json`, the model's `config.json`, and for an adapter from the run's
    `run_info.json` (`task`, `architecture`) or else its base's `config.json` when that is a local folder.
    """
    folder = Path(folder)
    if (folder / DUAL_ENCODER_CONFIG).is_file():
        return "dual-encoder"
    if (folder / "config.json").is_file():
        return _config_kind(_read_json(folder / "config.json"))
    if (folder / "run_info.json").is_file():
        info = _read_json(folder / "run_info.json")
        task, architecture = info.get("task"), info.get("architecture")
        kind = _RUN_KINDS.get((task, architecture)) or _RUN_KINDS.get((task, None))
        if kind:
            return kind
    if (folder / ADAPTER_CONFIG).is_file():
        base = _read_json(folder / ADAPTER_CONFIG).get("base_model_name_or_path")
        if isinstance(base, str) and base and (Path(base) / "config.json").is_file():
            return _config_kind(_read_json(Path(base) / "config.json"))
    return "other"


def usage_snippet(kind: str, source: str, base_model: str | None = None, base_subfolder: str | None = None) -> str:
    """The Python usage of a card: load the model (`source`, a repo id or folder) and run it on one image —
    an answer (`"vlm"`, `"blip-vqa"`), a caption (`"vision-encoder-decoder"`, `"blip-caption"`) or embeddings
    (`"clip"`, `"dual-encoder"`). One builder for every kind; the card tests execute what it writes.

    Args:
        kind (`str`): as `model_kind` returns it.
        source (`str`): the model's (or adapter's) repo id, or its local folder.
        base_model (`str`, *optional*): for an adapter, the base model it is loaded onto; `None` for a full model.
        base_subfolder (`str`, *optional*): the folder of `base_model` that holds the base (a composed ViT-GPT2
            travels inside its run's repo, as `base_model/`).
    """
    imports = list(_IMPORTS[kind])
    model_class = _MODEL_CLASSES.get(kind, "AutoModel")
    if kind == "dual-encoder":
        load = f'model, processor = load_contrastive("{source}")'
    elif base_model is None:
        load = f'model = {model_class}.from_pretrained("{source}")'
    else:
        imports.insert(0, "from peft import PeftModel")
        subfolder = f', subfolder="{base_subfolder}"' if base_subfolder else ""
        load = (f'base = {model_class}.from_pretrained("{base_model}"{subfolder})\n'
                f'model = PeftModel.from_pretrained(base, "{source}")')  # fmt: skip
    code = "\n".join(imports) + "\n\n" + load + "\n" + _USAGE[kind].format(source=source)
    return f"```python\n{code}```\n"


def _adapter_base(folder: Path, base_model: str | None) -> tuple[str, str | None]:
    """(base model, subfolder) an adapter's snippet loads: the Hub base when known, a composed base inside the run's
    own repo, else the path its `adapter_config.json` names."""
    if base_model is not None:
        return base_model, None
    if (folder / COMPOSED_BASE / "config.json").is_file():
        return "", COMPOSED_BASE  # filled with the card's own source
    named = _read_json(folder / ADAPTER_CONFIG).get("base_model_name_or_path")
    return (named if isinstance(named, str) and named else str(folder)), None


def model_index_results(metrics: dict, dataset: str | None = None) -> list[EvalResult]:
    """One `EvalResult` per metric of a `metrics.json` (as returned by `read_metrics`).

    Args:
        metrics (`dict`): the parsed `metrics.json`.
        dataset (`str`, *optional*): the dataset's Hub id, used when `meta.dataset` is missing.
    """
    meta = metrics.get("meta", {})
    task = str(meta.get("task") or "image-to-text")
    dataset_name = str(meta.get("dataset") or dataset or "unknown")
    split = meta.get("split")
    return [
        EvalResult(
            task_type=HUB_TASKS.get(task, task),
            task_name=task,
            dataset_type=dataset_name if is_hub_id(dataset_name) else "custom",
            dataset_name=dataset_name,
            dataset_split=str(split) if split is not None else None,
            metric_type=name,
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in metrics["metrics"].items()
        if value is not None
    ]


def _results_table(metrics: dict) -> str:
    meta = metrics.get("meta", {})
    ci = metrics.get("ci", {})
    about = ", ".join(f"{key} {meta[key]}" for key in ("dataset", "split", "n", "seed") if key in meta)
    lines = [f"## Evaluation{f' ({about})' if about else ''}", "", "| metric | value | 95% CI |", "|---|---|---|"]
    for name, value in metrics["metrics"].items():
        interval = ci.get(name)
        defined = isinstance(interval, list) and len(interval) == 2 and None not in interval  # NaN bounds are null
        shown = f"{interval[0]:.4f} – {interval[1]:.4f}" if defined else ""
        lines.append(f"| {name} | {'undefined' if value is None else f'{value:.4f}'} | {shown} |")
    return "\n".join(lines) + "\n"


def build_model_card(
    folder: str | Path,
    repo_id: str | None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str = "other",
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card for a model or adapter folder about to be pushed to `repo_id`.

    Its usage snippet (`usage_snippet`, chosen by `model_kind`) loads the model with the class that runs it (for a
    VLM adapter: `AutoModelForImageTextToText` and `PeftModel`, onto the real base model) and runs it on one image.

    Args:
        folder (`str` or `Path`): the saved model or adapter (`save_pretrained` output).
        repo_id (`str`): the repo it goes to; `None` for a card that stays beside a local run (its snippet loads the
            folder, and it has no `radtune hub pull` line).
        base_model (`str`, *optional*): Hub id of the base model; defaults to the one the folder's config names.
            A local path is left out of the YAML (the Hub only accepts repo ids there).
        datasets (`list[str]`, *optional*): Hub ids of the training datasets; defaults to `metrics.json`'s
            `meta.dataset` when that is a Hub id.
        license (`str`, *optional*, defaults to `"other"`): the license identifier.
        tags (`list[str]`, *optional*): extra tags, added to `medical`, `radiology` (and `lora`, `peft` for adapters).

    Returns:
        `ModelCard`
    """
    folder = Path(folder)
    is_adapter = (folder / ADAPTER_CONFIG).is_file()
    base_model = base_model or find_base_model(folder)
    if base_model is not None and not is_hub_id(base_model):
        base_model = None
    metrics = read_metrics(folder)
    meta = metrics.get("meta", {}) if metrics else {}
    if datasets is None and isinstance(meta.get("dataset"), str) and is_hub_id(meta["dataset"]):
        datasets = [meta["dataset"]]
    all_tags = list(DEFAULT_TAGS) + (["lora", "peft"] if is_adapter else []) + list(tags or [])
    name = repo_id.split("/")[-1] if repo_id else folder.resolve().name
    kind = model_kind(folder)
    towers = _dual_encoder_towers(folder) if kind == "dual-encoder" else []
    yaml_base = base_model or ([tower for tower in towers if is_hub_id(tower)] or None)
    terms = next((entry for entry in BASE_MODEL_TERMS if (base_model or "").startswith(entry[0])), None)
    data = ModelCardData(
        base_model=yaml_base,
        datasets=datasets or None,
        library_name="peft" if is_adapter else "transformers",
        **(terms[1] if terms else {"license": license}),
        tags=list(dict.fromkeys(all_tags)),
        model_name=name if metrics else None,
        eval_results=model_index_results(metrics, dataset=(datasets or [None])[0]) if metrics else None,
    )
    what = "A LoRA adapter" if is_adapter else "A model"
    if base_model:
        origin = f" from [{base_model}](https://huggingface.co/{base_model})"
    elif towers:
        origin = " from " + " and ".join(f"[{tower}](https://huggingface.co/{tower})" if is_hub_id(tower) else tower
                                         for tower in towers)  # fmt: skip
    else:
        origin = ""
    summary = f"{what} fine-tuned with radtune{origin}." + (f"\n\n{terms[2]}" if terms else "")
    source = repo_id or str(folder)
    if is_adapter:
        adapter_base, subfolder = _adapter_base(folder, base_model)
        usage = usage_snippet(kind, source, base_model=adapter_base or source, base_subfolder=subfolder)
    else:
        usage = usage_snippet(kind, source)
    pull = f"\n```bash\nradtune hub pull {repo_id} ./{name}\n```\n" if repo_id else ""
    body = _BODY.format(
        name=name, summary=summary, results=_results_table(metrics) if metrics else "", pull=pull, usage=usage
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _dual_encoder_towers(folder: Path) -> list[str]:
    """Where a dual encoder's text and image towers came from (its `dual_encoder_config.json`)."""
    config = _read_json(folder / DUAL_ENCODER_CONFIG)
    return [config[key] for key in ("text_model", "image_model") if isinstance(config.get(key), str) and config[key]]
