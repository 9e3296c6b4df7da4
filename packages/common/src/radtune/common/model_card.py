"""Model cards for the models and adapters radtune publishes.

`build_model_card(folder, repo_id)` reads what the folder says about itself (`adapter_config.json` or `config.json`
for the base model, `metrics.json` for evaluation results) and returns a `huggingface_hub.ModelCard` whose YAML
carries `base_model`, `datasets`, `library_name`, `license`, `tags` (always `medical` and `radiology`) and, when
`metrics.json` is present, `model-index` results that the Hub shows as an evaluation table.

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

```bash
radtune hub pull {repo_id} ./{name}
```

{usage}
Published with radtune, which fine-tunes vision-language models on medical images.
For research use only: not a medical device, and not validated for clinical decisions.
"""

_ADAPTER_USAGE = """```python
from peft import PeftModel
from transformers import AutoModel

base = AutoModel.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{repo_id}")
```
"""

_MODEL_USAGE = """```python
from transformers import AutoModel

model = AutoModel.from_pretrained("{repo_id}")
```
"""


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
        shown = f"{interval[0]:.4f} – {interval[1]:.4f}" if isinstance(interval, list) and len(interval) == 2 else ""
        lines.append(f"| {name} | {'undefined' if value is None else f'{value:.4f}'} | {shown} |")
    return "\n".join(lines) + "\n"


def build_model_card(
    folder: str | Path,
    repo_id: str,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str = "other",
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card for a model or adapter folder about to be pushed to `repo_id`.

    Args:
        folder (`str` or `Path`): the saved model or adapter (`save_pretrained` output).
        repo_id (`str`): the repo it goes to.
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
    name = repo_id.split("/")[-1]
    data = ModelCardData(
        base_model=base_model,
        datasets=datasets or None,
        library_name="peft" if is_adapter else "transformers",
        license=license,
        tags=list(dict.fromkeys(all_tags)),
        model_name=name if metrics else None,
        eval_results=model_index_results(metrics, dataset=(datasets or [None])[0]) if metrics else None,
    )
    kind = "A LoRA adapter" if is_adapter else "A model"
    origin = f" from [{base_model}](https://huggingface.co/{base_model})" if base_model else ""
    summary = f"{kind} fine-tuned with radtune{origin}."
    usage = (_ADAPTER_USAGE if is_adapter else _MODEL_USAGE).format(
        repo_id=repo_id, base_model=base_model or "BASE_MODEL"
    )
    body = _BODY.format(
        name=name, summary=summary, results=_results_table(metrics) if metrics else "", repo_id=repo_id, usage=usage
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
