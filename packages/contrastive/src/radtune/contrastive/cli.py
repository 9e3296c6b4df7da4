"""`radtune clip …`: contrastive training, zero-shot classification and retrieval.

Registered in packages/contrastive/pyproject.toml under the `radtune.commands` entry points. Heavy imports live
inside the commands so that `radtune --help` stays instant. Both evaluation commands read what the run recorded
(`run_info.json`: text and image columns, text length) unless told otherwise, and write into a new folder beside
the run's files (`<model>/eval-<command>-<split>`), never over them.
"""

from __future__ import annotations

import click

from radtune.common.cli_options import evaluation_options, image_column_option, text_column_option
from radtune.common.launch import train_command

TRAIN_MODULE = "radtune.contrastive.train"


@click.group()
def clip() -> None:
    """Contrastive image–text models (CLIP, BERT + ResNet dual encoders): train, zero-shot, retrieve.

    \b
    Example:
      radtune clip train --cpu -- --config packages/contrastive/recipes/phantom_cpu_clip.yaml
      radtune clip zero-shot --model runs/phantom-clip --dataset data/nih --labels nih
      radtune clip retrieve --model runs/phantom-clip --dataset data/phantom-reports
    """


clip.add_command(
    train_command(
        TRAIN_MODULE,
        examples=[
            "{command} --cpu -- --config packages/contrastive/recipes/phantom_cpu_clip.yaml",
            "{command} --cpu --num-processes 2 -- --config packages/contrastive/recipes/phantom_cpu_clip.yaml",
            "{command} --accelerate-config multi_gpu -- --config packages/contrastive/recipes/roco_clip.yaml "
            "--learning_rate 5e-6",
            "{command} -- --help",
        ],
    )
)


def _load_split(dataset: str, split: str):
    """`(split's rows, the whole DatasetDict)`."""
    from radtune.common.datasets_io import load_dataset_any

    data = load_dataset_any(dataset)
    if split not in data:
        raise click.BadParameter(f"{dataset} has no split {split!r}; it has: {', '.join(data)}", param_hint="--split")
    return data[split], data


def _load_model(model: str, device: str | None):
    import torch

    from radtune.common.hub import require_model_files
    from radtune.contrastive.modeling import load_contrastive

    require_model_files(model)
    loaded, processor = load_contrastive(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return loaded.to(device).eval(), processor


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@clip.command("zero-shot")
@evaluation_options(batch_size=32)
@image_column_option()
@click.option("--labels", default="nih", show_default=True,
              help="`nih`, `chexpert` or a comma-separated list of class names (each one of the dataset's labels).")
@click.option("--labels-column", default="labels", show_default=True, help="Column of each row's label names.")
def zero_shot_command(model, dataset, split, out, max_samples, batch_size, n_resamples, device, image_column, labels,
                      labels_column) -> None:  # fmt: skip
    """Zero-shot multi-label classification with positive/negative prompt pairs; per-class and macro AUC.

    \b
    Writes metrics.json (per-class, macro and micro AUC with bootstrap intervals), evaluation_results.csv
    (per image: predicted and true classes) and zero_shot_scores.csv (each image's probability of each class)
    into a new folder, <model>/eval-zero-shot-<split> unless --out says otherwise.
    \b
    Example:
      radtune clip zero-shot --model runs/phantom-clip --dataset data/nih --split test \\
          --labels Cardiomegaly,Effusion,Pneumothorax
    """
    from radtune.common.cli_options import recorded
    from radtune.common.hub import HubError
    from radtune.common.run import evaluation_out_dir, read_run_info
    from radtune.contrastive.evaluation import (
        dataset_labels,
        evaluate_zero_shot,
        report_lines,
        require_columns,
        zero_shot_classes,
    )

    try:
        out = evaluation_out_dir(model, "zero-shot", split, out)
        image_column = recorded(image_column, read_run_info(model), "image_column", "image")
        data, splits = _load_split(dataset, split)
        require_columns(data, [image_column, labels_column])
        # The dataset's labels are those of all its splits; checked before the model loads, to fail fast.
        known = dataset_labels([part[labels_column] for part in splits.values() if labels_column in part.column_names])
        zero_shot_classes(labels, data, labels_column, known)
        loaded, processor = _load_model(model, device)
        report = evaluate_zero_shot(loaded, processor, data, out, labels, image_column=image_column,
                                    labels_column=labels_column, known_labels=known, max_samples=max_samples,
                                    batch_size=batch_size, n_resamples=n_resamples,
                                    meta={"model": model, "dataset": dataset, "split": split})  # fmt: skip
    except (ValueError, OSError, HubError) as error:
        raise _fail(error) from error
    click.echo("\n".join(report_lines(report)))
    click.echo(f"wrote {', '.join(str(path) for path in report.files)}")


@clip.command("retrieve")
@evaluation_options(batch_size=32)
@text_column_option("text")
@image_column_option()
@click.option("--max-text-length", type=click.IntRange(min=2),
              help="Truncate texts to this many tokens (default: the run's max_text_length, else 77).")
def retrieve_command(model, dataset, split, out, max_samples, batch_size, n_resamples, device, text_column,
                     image_column, max_text_length) -> None:  # fmt: skip
    """Image→text and text→image retrieval: Recall@1/5/10 and median rank with bootstrap intervals (text i belongs
    to image i; rows with an empty text are left out).

    \b
    Writes metrics.json and evaluation_results.csv (each image's top-ranked text) into a new folder,
    <model>/eval-retrieval-<split> unless --out says otherwise. The texts are the run's text_column unless
    --text-column names another.
    \b
    Example:
      radtune clip retrieve --model runs/phantom-clip --dataset data/phantom-reports --split test
      radtune clip retrieve --model runs/phantom-clip --dataset data/phantom-reports --text-column impression
    """
    from radtune.common.cli_options import recorded
    from radtune.common.hub import HubError
    from radtune.common.run import evaluation_out_dir, read_run_info
    from radtune.contrastive.evaluation import evaluate_retrieval, report_lines

    try:
        out = evaluation_out_dir(model, "retrieval", split, out)
        info = read_run_info(model)
        data, _ = _load_split(dataset, split)
        loaded, processor = _load_model(model, device)
        report = evaluate_retrieval(loaded, processor, data, out, text_column=recorded(text_column, info, "text_column", "text"),
                                    image_column=recorded(image_column, info, "image_column", "image"),
                                    max_text_length=recorded(max_text_length, info, "max_text_length", 77),
                                    max_samples=max_samples, batch_size=batch_size, n_resamples=n_resamples,
                                    meta={"model": model, "dataset": dataset, "split": split})  # fmt: skip
    except (ValueError, OSError, HubError) as error:
        raise _fail(error) from error
    click.echo("\n".join(report_lines(report)))
    click.echo(f"wrote {', '.join(str(path) for path in report.files)}")
