"""`radtune caption`: train, evaluate and run image captioners (ViT-GPT2, BLIP) and BLIP VQA.

`train` and `train-vqa` launch the training modules (launcher flags before `--`, the module's flags after it);
`evaluate` scores a captioner or a BLIP VQA model with the same function, and the same defaults, as the trainer's
final evaluation, reading what the run recorded (`run_info.json`) and writing into a new folder beside the run's files.
"""

from __future__ import annotations

import math

import click

from radtune.common.cli_options import evaluation_options, image_column_option, recorded, text_column_option
from radtune.common.launch import train_command


@click.group("caption")
def caption() -> None:
    """Fine-tune and run image captioning (ViT-GPT2, BLIP) and BLIP VQA models.

    \b
    Example:
      radtune caption train --cpu -- --config packages/captioning/recipes/phantom_cpu_vitgpt2.yaml
      radtune caption evaluate --model runs/rocov2-vitgpt2-lora --dataset runs/data/rocov2 --split test
      radtune caption predict --model runs/rocov2-vitgpt2-lora --image scan.dcm
    """


caption.add_command(
    train_command(
        "radtune.captioning.train",
        help="Fine-tune a ViT-GPT2 or BLIP captioner: launch `python -m radtune.captioning.train` with accelerate "
        "(or torchrun on the CPU).\n\nLauncher flags (below) go before `--`; the training module's own flags "
        "(`--config recipe.yaml`, any field of its --help) go after it.",
        examples=[
            "{command} --cpu -- --config packages/captioning/recipes/phantom_cpu_vitgpt2.yaml",
            "{command} --accelerate-config single_gpu -- "
            "--config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml --num_train_epochs 3",
            "{command} --accelerate-config multi_gpu --num-processes 4 -- "
            "--config packages/captioning/recipes/roco_blip.yaml",
            "{command} -- --help",
        ],
    )
)
caption.add_command(
    train_command(
        "radtune.captioning.train_vqa",
        name="train-vqa",
        help="Fine-tune BLIP for visual question answering: launch `python -m radtune.captioning.train_vqa` with "
        "accelerate (or torchrun on the CPU).\n\nLauncher flags (below) go before `--`; the training module's own "
        "flags (`--config recipe.yaml`, any field of its --help) go after it.",
        examples=[
            "{command} --accelerate-config single_gpu -- --config packages/captioning/recipes/vqa_rad_blip.yaml",
            "{command} --cpu -- --dataset_name runs/data/vqa-rad --model_name_or_path runs/tiny-blip-vqa --use_peft",
            "{command} -- --help",
        ],
    )
)


@caption.command(
    "evaluate",
    epilog="""\b
Examples:
  radtune caption evaluate --model runs/rocov2-vitgpt2-lora --dataset runs/data/rocov2 --split test
  radtune caption evaluate --model me/blip-roco --dataset me/roco --text-column caption --max-samples 500
  radtune caption evaluate --model runs/blip-vqa-rad --dataset runs/vqa-rad --no-ablation --n-resamples 2000""",
)
@evaluation_options(base_model=True, batch_size=16)
@text_column_option("caption")
@image_column_option()
@click.option("--max-new-tokens", type=click.IntRange(min=1),
              help="Longest generated text (default: the model's saved setting).")  # fmt: skip
@click.option(
    "--num-beams", type=click.IntRange(min=1), help="Beam search width (default: the model's saved setting)."
)
@click.option("--meteor/--no-meteor", default=True, show_default=True, help="Compute METEOR (it starts a JVM).")
@click.option("--baseline-caption", help='Also score this constant caption (e.g. "No acute cardiopulmonary process.") '
              "against the same references, as the bar to clear (captioners).")  # fmt: skip
@click.option("--ablation/--no-ablation", default=True, show_default=True,
              help="Also generate with blank and noise images, and flag a model that ignores the image.")  # fmt: skip
def evaluate(model, base_model, dataset, split, out, max_samples, batch_size, n_resamples, device, text_column,
             image_column, max_new_tokens, num_beams, meteor, baseline_caption, ablation) -> None:  # fmt: skip
    """Generate for a dataset split and write evaluation_results.csv and metrics.json into a new folder.

    A captioner is scored by `evaluate_captions` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D), a BLIP VQA model by
    `evaluate_blip_vqa` (closed accuracy, open recall/F1, and the majority answer of the run's training split as the
    baseline): the same functions, with the same defaults, as the trainers' final evaluation. The text and image
    columns, the base model of an adapter and the seed default to what the run recorded in run_info.json.

    Metrics come with 95% bootstrap intervals over the items (`value [lo, hi]`; CIDEr-D's is the usual
    approximation with the full corpus's document frequencies, METEOR has none). Unless `--no-ablation`, the
    same items are also generated with blank and noise images and scored side by side: a model whose CIDEr-D
    (for VQA: closed accuracy) interval reaches its blank- or noise-image score is flagged as ignoring the image.
    The run's own files are never written: the default output is a new <model>/eval-caption-<split> folder.
    """
    from radtune.captioning.evaluation import evaluate_blip_vqa, evaluate_captions
    from radtune.captioning.modeling import load_captioner, resolve_model_path
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.hub import HubError
    from radtune.common.metrics.io import read_metrics
    from radtune.common.run import evaluation_out_dir, read_run_info

    try:
        out = evaluation_out_dir(model, "caption", split, out)
        data = load_dataset_any(dataset)
        if split not in data:
            raise ValueError(f"split {split!r} not in {dataset}; it has: {', '.join(data)}")
        folder = resolve_model_path(model)
        info = read_run_info(folder)
        captioner = load_captioner(folder, device=device, base_model=recorded(base_model, info, "base_model", None))
        if captioner.vqa and (baseline_caption or text_column):
            raise click.UsageError("--baseline-caption and --text-column are for captioners; this is a BLIP VQA model")
        generation = {key: value for key, value in {"max_new_tokens": max_new_tokens, "num_beams": num_beams}.items()
                      if value is not None}  # fmt: skip
        common = {"image_column": recorded(image_column, info, "image_column", "image"), "batch_size": batch_size,
                  "max_samples": max_samples, "ablation": ablation, "n_resamples": n_resamples,
                  "seed": info.get("seed", 0), **generation}  # fmt: skip
        meta = {"model": model, "base_model": info.get("base_model"), "dataset": dataset, "split": split}
        if captioner.vqa:
            train_split = info.get("train_split", "train")
            train = data[train_split] if train_split in data and train_split != split else None
            if train is None:
                click.echo(f"notice: {dataset} has no {train_split!r} split besides {split!r}: no majority baseline")
            evaluate_blip_vqa(captioner, data[split], out, train_dataset=train, meta=meta, **common)
        else:
            text_column = recorded(text_column, info, "text_column", "caption")
            evaluate_captions(captioner, data[split], out, text_column=text_column, meta=meta, meteor=meteor,
                              baseline_caption=baseline_caption, **common)  # fmt: skip
    except (ValueError, OSError, HubError) as error:
        raise click.ClickException(str(error)) from error
    _print_report(read_metrics(out))
    click.echo(f"wrote {out / 'evaluation_results.csv'} and {out / 'metrics.json'}")


def _print_report(report: dict) -> None:
    """Each metric as `value [lo, hi]`, with its blank- and noise-image values and the gap beside it, then the
    verdict of the image-ablation check."""
    from radtune.captioning.evaluation import ABLATION_PREFIX, ABLATIONS

    metrics, ci = report["metrics"], report.get("ci", {})
    verdict = report["meta"].get("image_ablation")
    kinds = ABLATIONS if verdict else ()
    headline = [name for name in metrics if not name.startswith(ABLATION_PREFIX)]
    width = max(len(name) for name in headline)
    click.echo(f"{'metric':{width}s}  {'value [95% CI]':30s}" + "".join(f"{kind:>10s}" for kind in kinds)
               + (f"{'gap':>10s}" if kinds else ""))  # fmt: skip
    for name in headline:
        shown = _number(metrics[name])
        if name in ci:
            shown += f" [{_number(ci[name][0])}, {_number(ci[name][1])}]"
        line = f"{name:{width}s}  {shown:30s}"
        ablated = [metrics.get(f"{ABLATION_PREFIX}{kind}/{name}") for kind in kinds]
        if kinds and metrics[name] is not None and all(value is not None for value in ablated):
            line += "".join(f"{_number(value):>10s}" for value in ablated)
            gap = metrics[name] - max(ablated)
            line += f"{'n/a' if math.isnan(gap) else f'{gap:+.4f}':>10s}"
        click.echo(line.rstrip())
    if report.get("subgroups"):
        from radtune.common.metrics.subgroups import subgroup_table

        click.echo(subgroup_table(report["subgroups"]))
    if verdict:
        from radtune.common.metrics.bootstrap import ablation_message

        ignored = verdict["ignores_image"]
        click.secho(ablation_message(verdict), fg="red" if ignored else "green", bold=ignored)


def _number(value: float | None) -> str:
    # NaN or None: a score over no items, read back from metrics.json's null
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


@caption.command(
    "predict",
    epilog="""\b
Examples:
  radtune caption predict --model runs/rocov2-vitgpt2-lora --image chest.png
  radtune caption predict --model me/blip-vqa-rad --image scan.dcm --question "Is there a pleural effusion?"
  radtune caption predict --model nlpconnect/vit-gpt2-image-captioning --image https://example.org/x.jpg""",
)
@click.option("--model", "model_name", required=True,
              help="A training run's folder, an adapter, a merged model or a Hub repo id.")  # fmt: skip
@click.option("--image", "images", required=True, multiple=True, help="Image path, URL or DICOM file (repeatable).")
@click.option("--question", help="The question, for a VQA model.")
@click.option("--max-new-tokens", type=int, help="Longest generated text (default: the model's saved setting).")
@click.option("--num-beams", type=int, help="Beam search width.")
@click.option("--device", help="cuda, cpu, … (default: CUDA when available).")
def predict(model_name, images, question, max_new_tokens, num_beams, device) -> None:
    """Caption an image (or answer --question about it) and print the text."""
    from radtune.captioning.modeling import load_captioner
    from radtune.common.hub import HubError
    from radtune.common.images import ImageLoadError, load_image

    try:
        captioner = load_captioner(model_name, device=device)
    except (ValueError, OSError, HubError) as error:
        raise click.ClickException(str(error)) from error
    if captioner.vqa and not question:
        raise click.UsageError("this is a VQA model: pass --question")
    if question and not captioner.vqa:
        raise click.UsageError("--question needs a VQA model; this one captions")
    try:
        loaded = [load_image(image) for image in images]
    except (FileNotFoundError, ImageLoadError) as error:
        raise click.ClickException(str(error)) from error
    overrides = {k: v for k, v in {"max_new_tokens": max_new_tokens, "num_beams": num_beams}.items() if v is not None}
    texts = captioner.generate(loaded, questions=[question] * len(loaded) if question else None, **overrides)
    for image, text in zip(images, texts, strict=True):
        click.echo(text if len(images) == 1 else f"{image}\t{text}")
