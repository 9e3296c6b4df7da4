"""`radtune clip …`: contrastive training, zero-shot classification and retrieval.

Registered in packages/contrastive/pyproject.toml under the `radtune.commands` entry points. Heavy imports live
inside the commands so that `radtune --help` stays instant.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

TRAIN_MODULE = "radtune.contrastive.train"


@click.group()
def clip() -> None:
    """Contrastive image–text models (CLIP, BERT + ResNet dual encoders): train, zero-shot, retrieve.

    \b
    Example:
      radtune clip train --cpu --config packages/contrastive/recipes/phantom_cpu_clip.yaml
      radtune clip zero-shot --model runs/phantom-clip --dataset data/nih --labels nih --out runs/zs
      radtune clip retrieve --model runs/phantom-clip --dataset data/phantom-reports --out runs/ret
    """


@clip.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--accelerate-config", default=None, help="A shipped accelerate config (multi_gpu, fsdp, zero2, …) or a YAML file.")
@click.option("--cpu", is_flag=True, help="Run on the CPU (several processes go through torchrun with gloo).")
@click.option("--num-processes", type=int, default=None, help="Number of processes to start.")
@click.option("--dry-run", is_flag=True, help="Print the launch command and exit.")
@click.pass_context
def train(ctx: click.Context, accelerate_config: str | None, cpu: bool, num_processes: int | None, dry_run: bool) -> None:
    """Train; every other argument goes to `python -m radtune.contrastive.train` (see its --help).

    \b
    Example:
      radtune clip train --config packages/contrastive/recipes/roco_clip.yaml --learning_rate 5e-6
      radtune clip train --cpu --num-processes 2 --config packages/contrastive/recipes/phantom_cpu_clip.yaml
    """
    import shlex

    from radtune.common.launch import run_launch, training_command

    try:
        command = training_command(TRAIN_MODULE, ctx.args, accelerate_config, num_processes, cpu)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--accelerate-config") from error
    if dry_run:
        click.echo(shlex.join(command))
        return
    ctx.exit(run_launch(command))


def _load_split(dataset: str, split: str, max_samples: int | None, columns: list[str]):
    from radtune.common.datasets_io import load_dataset_any

    try:
        data = load_dataset_any(dataset, split=split)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--split") from error
    for column in columns:
        if column not in data.column_names:
            raise click.BadParameter(f"column {column!r} not in {dataset} ({split}); it has: {', '.join(data.column_names)}")
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    return data


def _load_model(model: str, device: str | None):
    import torch

    from radtune.contrastive.modeling import load_contrastive

    loaded, processor = load_contrastive(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return loaded.to(device).eval(), processor


def read_command_config(command: click.Command, path: str | Path) -> dict:
    """Defaults for `command` from a YAML file whose keys are its option names (`model`, `labels`, `max-samples`
    or `max_samples`, …).

    Raises:
        `click.BadParameter`: a missing file, or a key the command has no option for (the message names it).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise click.BadParameter(f"config file not found: {path}", param_hint="--config")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of option names to values", param_hint="--config")
    names = {}
    for param in command.params:
        names[param.name] = param.name
        for opt in param.opts:
            names[opt.lstrip("-").replace("-", "_")] = param.name
    unknown = sorted(key for key in data if str(key).replace("-", "_") not in names)
    if unknown:
        raise click.BadParameter(
            f"unknown key(s) in {path}: {', '.join(unknown)}; known: {', '.join(sorted(set(names) - {'config'}))}",
            param_hint="--config",
        )
    return {names[str(key).replace("-", "_")]: value for key, value in data.items()}


def _apply_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None and not ctx.resilient_parsing:
        ctx.default_map = {**(ctx.default_map or {}), **read_command_config(ctx.command, value)}


_common_options = [
    click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_apply_config,
                 help="A YAML recipe of this command's options (keys = option names); flags override it."),
    click.option("--model", "model_path", required=True, help="A trained model folder or Hub id (CLIP or dual encoder)."),
    click.option("--dataset", required=True, help="A `radtune data build` folder or a Hub dataset id."),
    click.option("--split", default="test", show_default=True, help="Split to evaluate."),
    click.option("--image-column", default="image", show_default=True),
    click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                 help="Where metrics.json and the CSVs go (default: <model>/eval-<command>-<split> for a local model)."),
    click.option("--max-samples", type=int, default=None, help="Use only the first N rows."),
    click.option("--batch-size", type=int, default=32, show_default=True),
    click.option("--device", default=None, help="cuda, cpu, … (default: cuda when available)."),
]


def _with_common(function):
    for option in reversed(_common_options):
        function = option(function)
    return function


def _out_dir(out_dir: str | None, model: str, name: str) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if Path(model).is_dir():
        return Path(model) / name
    raise click.UsageError("--out is required when --model is a Hub id")


@clip.command("zero-shot")
@_with_common
@click.option("--labels", "labels_spec", default="nih", show_default=True,
              help="`nih`, `chexpert` or a comma-separated list of class names.")
@click.option("--labels-column", default="labels", show_default=True, help="Column of each row's label names.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for 95% intervals of each AUC (0: none).")
def zero_shot_command(model_path, dataset, split, image_column, out_dir, max_samples, batch_size, device,
                      labels_spec, labels_column, bootstrap) -> None:  # fmt: skip
    """Zero-shot multi-label classification with positive/negative prompt pairs; per-class and macro AUC.

    \b
    Writes metrics.json (per-class, macro and micro AUC with bootstrap intervals), evaluation_results.csv
    (per image: predicted and true classes) and zero_shot_scores.csv (each image's probability of each class).
    \b
    Example:
      radtune clip zero-shot --model runs/phantom-clip --dataset data/nih --split test \\
          --labels Cardiomegaly,Effusion,Pneumothorax --out runs/zero-shot
    """
    from radtune.contrastive.evaluation import resolve_labels, write_outputs, zero_shot, zero_shot_ci, zero_shot_rows

    class_names = resolve_labels(labels_spec)
    data = _load_split(dataset, split, max_samples, [image_column, labels_column])
    model, processor = _load_model(model_path, device)
    result, probabilities, truth = zero_shot(model, processor, data[image_column], data[labels_column], class_names,
                                             batch_size=batch_size)  # fmt: skip
    ci = zero_shot_ci(probabilities, truth, class_names, n_resamples=bootstrap) if bootstrap else None
    out = _out_dir(out_dir, model_path, f"eval-zero-shot-{split}")
    ids = data["id"] if "id" in data.column_names else [str(i) for i in range(len(data))]
    extra = {"classes": class_names, "undefined": result["undefined"],
             "positives": {name: int(truth[:, j].sum()) for j, name in enumerate(class_names)},
             "prompts": "CheXzero-style positive/negative prompt pairs, ensembled over templates"}  # fmt: skip
    write_outputs(out, result["metrics"], zero_shot_rows(ids, data[labels_column], probabilities, class_names),
                  task="zero-shot", model=model_path, dataset=dataset, split=split, ci=ci, extra_meta=extra)  # fmt: skip
    with open(out / "zero_shot_scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *class_names])
        writer.writerows([identifier, *(f"{p:.6f}" for p in row)] for identifier, row in zip(ids, probabilities, strict=True))
    metrics = result["metrics"]
    for name in [*class_names, "macro"]:
        key = "auc_macro" if name == "macro" else f"auc/{name}"
        if key in result["undefined"]:
            click.echo(f"{name:>24}  AUC undefined ({result['undefined'][key]})")
            continue
        interval = f"  [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if ci else ""
        click.echo(f"{name:>24}  AUC {metrics[key]:.3f}{interval}")
    click.echo(f"wrote {out / 'metrics.json'}, {out / 'evaluation_results.csv'}, {out / 'zero_shot_scores.csv'}")


@clip.command("retrieve")
@_with_common
@click.option("--caption-column", default="text", show_default=True, help="Column of the paired texts.")
@click.option("--max-text-length", type=int, default=77, show_default=True)
def retrieve_command(model_path, dataset, split, image_column, out_dir, max_samples, batch_size, device,
                     caption_column, max_text_length) -> None:  # fmt: skip
    """Image→text and text→image retrieval: Recall@1/5/10 and median rank (text i belongs to image i).

    \b
    Example:
      radtune clip retrieve --model runs/phantom-clip --dataset data/phantom-reports --split test --out runs/retrieval
    """
    from radtune.contrastive.evaluation import retrieval_rows, retrieve, write_outputs

    data = _load_split(dataset, split, max_samples, [image_column, caption_column])
    data = data.filter(lambda text: bool(text and str(text).strip()), input_columns=[caption_column])
    model, processor = _load_model(model_path, device)
    captions = data[caption_column]
    metrics, similarity = retrieve(model, processor, data[image_column], captions, batch_size, max_text_length)
    out = _out_dir(out_dir, model_path, f"eval-retrieval-{split}")
    ids = data["id"] if "id" in data.column_names else [str(i) for i in range(len(data))]
    write_outputs(out, metrics, retrieval_rows(ids, captions, similarity), task="retrieval", model=model_path,
                  dataset=dataset, split=split, extra_meta={"caption_column": caption_column})  # fmt: skip
    click.echo(json.dumps(metrics, indent=2))
    click.echo(f"wrote {out / 'metrics.json'}, {out / 'evaluation_results.csv'}")
