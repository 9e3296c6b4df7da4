"""`radtune caption`: train, evaluate and run image captioners (ViT-GPT2, BLIP) and BLIP VQA."""

from __future__ import annotations

import math
from pathlib import Path

import click

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


@click.group("caption")
def caption() -> None:
    """Fine-tune and run image captioning (ViT-GPT2, BLIP) and BLIP VQA models.

    \b
    Example:
      radtune caption train --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml
      radtune caption evaluate --model runs/rocov2-vitgpt2-lora --dataset runs/data/rocov2 --split test
      radtune caption predict --model runs/rocov2-vitgpt2-lora --image scan.dcm
    """


def _launch(module: str, ctx: click.Context, accelerate_config: str | None, cpu: bool, num_processes: int | None):
    from radtune.common.launch import run_launch, training_command

    try:
        command = training_command(module, ctx.args, accelerate_config, num_processes, cpu)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    ctx.exit(run_launch(command))


_launch_options = [
    click.option(
        "--accelerate-config",
        help="A shipped accelerate config (single_gpu, multi_gpu, zero2, zero3, fsdp) or a YAML file.",
    ),  # fmt: skip
    click.option("--cpu", is_flag=True, help="Run on the CPU (several processes go through torchrun)."),
    click.option("--num-processes", type=int, help="Processes to start (GPUs, or CPU ranks with --cpu)."),
]


def _with_launch_options(function):
    for option in reversed(_launch_options):
        function = option(function)
    return function


@caption.command(
    "train",
    context_settings=PASS_THROUGH,
    epilog="""\b
Examples (every other argument goes to radtune.captioning.train; see `python -m radtune.captioning.train --help`):
  radtune caption train --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml --num_train_epochs 3
  radtune caption train --accelerate-config multi_gpu --num-processes 4 --config packages/captioning/recipes/roco_blip.yaml
  radtune caption train --cpu --config packages/captioning/recipes/phantom_cpu_vitgpt2.yaml""",
)
@_with_launch_options
@click.pass_context
def train(ctx: click.Context, accelerate_config: str | None, cpu: bool, num_processes: int | None) -> None:
    """Fine-tune a ViT-GPT2 or BLIP captioner (arguments pass through to the training module)."""
    _launch("radtune.captioning.train", ctx, accelerate_config, cpu, num_processes)


@caption.command(
    "train-vqa",
    context_settings=PASS_THROUGH,
    epilog="""\b
Examples (every other argument goes to radtune.captioning.train_vqa):
  radtune caption train-vqa --config packages/captioning/recipes/vqa_rad_blip.yaml""",
)
@_with_launch_options
@click.pass_context
def train_vqa(ctx: click.Context, accelerate_config: str | None, cpu: bool, num_processes: int | None) -> None:
    """Fine-tune BLIP for visual question answering (arguments pass through to the training module)."""
    _launch("radtune.captioning.train_vqa", ctx, accelerate_config, cpu, num_processes)


@caption.command(
    "evaluate",
    epilog="""\b
Examples:
  radtune caption evaluate --model runs/rocov2-vitgpt2-lora --dataset runs/data/rocov2 --split test
  radtune caption evaluate --model me/blip-roco --dataset me/roco --text-field caption --max-samples 500
  radtune caption evaluate --model runs/blip-vqa-rad --dataset runs/vqa-rad --no-ablation --n-resamples 2000""",
)
@click.option("--model", "model_name", required=True, help="Model or LoRA adapter: a folder or a Hub repo id.")
@click.option("--dataset", required=True, help="A `radtune data build`/`data qa` folder or a Hub dataset repo.")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder. Default: the model folder when local, else ./eval-<name>.")  # fmt: skip
@click.option("--text-field", default="caption", show_default=True,
              help="Reference text: findings, impression, report, caption or text (captioning only).")  # fmt: skip
@click.option("--batch-size", default=16, show_default=True, help="Images per generate call.")
@click.option("--max-samples", type=int, help="Evaluate only the first N rows.")
@click.option("--max-new-tokens", type=int, help="Longest generated text (default: the model's saved setting).")
@click.option("--num-beams", type=int, help="Beam search width (default: the model's saved setting).")
@click.option("--no-meteor", is_flag=True, help="Skip METEOR (it starts a JVM).")
@click.option("--device", help="cuda, cpu, … (default: CUDA when available).")
@click.option("--baseline-caption", help='Also score this constant caption (e.g. "No acute cardiopulmonary process.") '
              "against the same references, as the bar to clear.")  # fmt: skip
@click.option("--ablation/--no-ablation", default=True, show_default=True,
              help="Also generate with blank and noise images, and flag a model that ignores the image.")  # fmt: skip
@click.option("--n-resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples for the CIs.")
def evaluate(model_name, dataset, split, out_dir, text_field, batch_size, max_samples, max_new_tokens, num_beams,
             no_meteor, device, baseline_caption, ablation, n_resamples) -> None:  # fmt: skip
    """Generate for a dataset split and write evaluation_results.csv and metrics.json.

    Metrics come with 95% bootstrap intervals over the items (`value [lo, hi]`; CIDEr-D's is the usual
    approximation with the full corpus's document frequencies, METEOR has none). Unless `--no-ablation`, the
    same items are also generated with blank and noise images and scored side by side: a model whose CIDEr-D
    (for VQA: closed accuracy) interval reaches its blank- or noise-image score is flagged as ignoring the image.
    """
    from radtune.captioning.evaluation import evaluate_dataset
    from radtune.captioning.modeling import load_captioner
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.metrics.io import read_metrics

    try:
        rows = load_dataset_any(dataset, split=split)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    captioner = load_captioner(model_name, device=device)
    if out_dir is None:
        local = Path(model_name)
        out_dir = local if local.is_dir() else Path(f"eval-{model_name.rstrip('/').split('/')[-1]}")
    overrides = {k: v for k, v in {"max_new_tokens": max_new_tokens, "num_beams": num_beams}.items() if v is not None}
    try:
        evaluate_dataset(
            captioner, rows, out_dir, text_field=text_field, batch_size=batch_size, max_samples=max_samples,
            meta={"model": model_name, "dataset": dataset, "split": split}, meteor=not no_meteor,
            baseline_caption=baseline_caption, ablation=ablation, n_resamples=n_resamples, **overrides,
        )  # fmt: skip
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    _print_report(read_metrics(out_dir))
    click.echo(f"wrote {out_dir / 'evaluation_results.csv'} and {out_dir / 'metrics.json'}")


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
        if kinds and all(value is not None for value in ablated):
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
@click.option("--model", "model_name", required=True, help="Model or LoRA adapter: a folder or a Hub repo id.")
@click.option("--image", "images", required=True, multiple=True, help="Image path, URL or DICOM file (repeatable).")
@click.option("--question", help="The question, for a VQA model.")
@click.option("--max-new-tokens", type=int, help="Longest generated text (default: the model's saved setting).")
@click.option("--num-beams", type=int, help="Beam search width.")
@click.option("--device", help="cuda, cpu, … (default: CUDA when available).")
def predict(model_name, images, question, max_new_tokens, num_beams, device) -> None:
    """Caption an image (or answer --question about it) and print the text."""
    from radtune.captioning.modeling import load_captioner
    from radtune.common.images import ImageLoadError, load_image

    captioner = load_captioner(model_name, device=device)
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
