"""`radtune vqa`: train, evaluate, predict with and merge LLaVA VQA adapters."""

from __future__ import annotations

import sys
from pathlib import Path

import click

TRAIN_MODULE = "radtune.llava_vqa.train"


@click.group("vqa")
def vqa() -> None:
    """LLaVA-1.5 visual question answering: fine-tune (LoRA/QLoRA), evaluate, predict, merge.

    \b
    Example:
      radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/slake.yaml
      radtune vqa evaluate --adapter me/llava-slake-lora --dataset runs/slake-qa --split test
    """


@vqa.command(
    "train",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="""\b
Examples:
  radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/chexpert_plus_qa.yaml
  radtune vqa train --accelerate-config zero3 --num-processes 8 -- --config recipe.yaml --learning_rate 1e-4
  radtune vqa train --cpu --num-processes 2 -- --config packages/llava_vqa/recipes/phantom_cpu.yaml""",
)
@click.option("--accelerate-config", help="A shipped accelerate config (single_gpu, multi_gpu, fsdp, zero2, zero3, "
              "multi_node) or a YAML file.")  # fmt: skip
@click.option("--num-processes", type=int, help="Processes to start (overrides the accelerate config).")
@click.option("--cpu", is_flag=True, help="Run on the CPU; several processes go through torchrun (gloo).")
@click.pass_context
def train(ctx: click.Context, accelerate_config: str | None, num_processes: int | None, cpu: bool) -> None:
    """Launch `radtune.llava_vqa.train` with accelerate (or torchrun on the CPU).

    Every other argument goes to the training script: `--config recipe.yaml` and any of its fields as flags.
    """
    from radtune.common.launch import run_launch, training_command

    try:
        command = training_command(TRAIN_MODULE, ctx.args, accelerate_config, num_processes, cpu)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    sys.exit(run_launch(command))


def _model_options(function):
    function = click.option("--adapter", required=True,
                            help="Adapter (or merged model): a folder or a Hub repo id.")(function)  # fmt: skip
    function = click.option("--base", help="Base model for the adapter (default: the one it was trained on).")(function)
    function = click.option("--load-in-4bit", is_flag=True, help="Quantise the base model (nf4) to save memory.")(
        function
    )
    function = click.option("--dtype", default="auto", show_default=True, help="Weights dtype.")(function)
    return function


def _load(adapter: str, base: str | None, dtype: str, load_in_4bit: bool):
    from radtune.common.hub import HubError
    from radtune.llava_vqa.inference import load_vqa_model

    try:
        return load_vqa_model(adapter, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except (HubError, OSError, ValueError) as error:
        raise click.ClickException(f"could not load {adapter}: {error}") from error


@vqa.command(
    "evaluate",
    epilog="""\b
Examples:
  radtune vqa evaluate --adapter runs/llava-vqa --dataset runs/phantom-qa --split test
  radtune vqa evaluate --adapter me/llava-slake-lora --dataset me/slake-qa --out runs/eval-slake""",
)
@_model_options
@click.option("--dataset", required=True, help="QA dataset (radtune export format): a folder or a Hub repo id.")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: <adapter folder>/eval-<split>, or ./eval-<split> for a repo id).")  # fmt: skip
@click.option("--batch-size", type=int, default=8, show_default=True, help="Generation batch size.")
@click.option("--max-new-tokens", type=int, default=32, show_default=True, help="Longest answer.")
@click.option("--max-samples", type=int, help="Evaluate the first N questions only.")
@click.option("--ablation/--no-ablation", default=True, show_default=True,
              help="Also answer with blank and noise images, and flag a model that ignores the image.")  # fmt: skip
@click.option("--n-resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples for the CIs.")
@click.option("--baseline-split", default="train", show_default=True,
              help="Split whose majority answers give the trivial baseline (skipped when absent; '' to skip).")  # fmt: skip
def evaluate(adapter, base, load_in_4bit, dtype, dataset, split, out_dir, batch_size, max_new_tokens, max_samples,
             ablation, n_resamples, baseline_split):  # fmt: skip
    """Answer every question of a QA split and score it (strict and LLaVA-Med metrics).

    Writes `evaluation_results.csv` (one row per question) and `metrics.json` with bootstrap intervals, the
    majority-answer baseline (`majority_baseline/…`, from the training split) and, unless `--no-ablation`, the
    same questions answered with blank and noise images: a model whose score does not drop without the image
    is flagged as ignoring it.
    """
    from radtune.common.datasets_io import load_dataset_any
    from radtune.llava_vqa.evaluation import evaluate_vqa

    try:
        splits = load_dataset_any(dataset)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    if split not in splits:
        raise click.ClickException(f"split {split!r} not in {dataset}; it has: {', '.join(splits)}")
    data = splits[split]
    baseline = splits[baseline_split] if baseline_split and baseline_split in splits else None
    model, processor = _load(adapter, base, dtype, load_in_4bit)
    out_dir = out_dir or (Path(adapter) if Path(adapter).is_dir() else Path(".")) / f"eval-{split}"
    try:
        report = evaluate_vqa(model, processor, data, out_dir, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              max_samples=max_samples, baseline_dataset=baseline, ablation=ablation,
                              n_resamples=n_resamples,
                               meta={"model": adapter, "dataset": dataset, "split": split})  # fmt: skip
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    _print_report(report)
    click.echo(f"wrote {out_dir / 'evaluation_results.csv'} and {out_dir / 'metrics.json'}")


def _print_report(report: dict) -> None:
    ci = report.get("ci", {})
    for name, value in report["metrics"].items():
        shown = "undefined" if value is None else f"{value:.4f}"
        if name in ci:
            shown += f" [{ci[name][0]:.4f}, {ci[name][1]:.4f}]"
        click.echo(f"{name:48s} {shown}")
    if report.get("subgroups"):
        from radtune.common.metrics.subgroups import subgroup_table

        click.echo(subgroup_table(report["subgroups"]))
    verdict = report["meta"].get("image_ablation")
    if verdict:
        from radtune.common.metrics.bootstrap import ablation_message

        ignored = verdict["ignores_image"]
        click.secho(ablation_message(verdict), fg="red" if ignored else "green", bold=ignored)


@vqa.command(
    "predict",
    epilog="""\b
Examples:
  radtune vqa predict --adapter runs/llava-vqa --image chest.png --question "Is there a pleural effusion?"
  radtune vqa predict --adapter me/llava-slake-lora --image study.dcm --question "Which side is the pneumothorax on?\"""",
)
@_model_options
@click.option("--image", required=True, help="Image: a path (PNG, JPEG, DICOM) or an http(s) URL.")
@click.option("--question", required=True, help="The question.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True, help="Longest answer.")
def predict(adapter, base, load_in_4bit, dtype, image, question, max_new_tokens):
    """Answer one question about one image; the answer goes to stdout."""
    from radtune.common.images import ImageLoadError, load_image
    from radtune.llava_vqa.inference import generate_answers

    try:
        picture = load_image(image)
    except (FileNotFoundError, ImageLoadError) as error:
        raise click.ClickException(str(error)) from error
    model, processor = _load(adapter, base, dtype, load_in_4bit)
    [answer] = generate_answers(model, processor, [picture], [question], max_new_tokens=max_new_tokens, progress=False)
    click.echo(answer)


@vqa.command(
    "merge",
    epilog="""\b
Example:
  radtune vqa merge --adapter runs/llava-vqa --out runs/llava-vqa-merged""",
)
@click.option("--adapter", required=True, help="LoRA adapter: a folder or a Hub repo id.")
@click.option("--base", help="Base model (default: the one the adapter was trained on).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the merged model.")  # fmt: skip
@click.option("--dtype", default="auto", show_default=True, help="Weights dtype of the merged model.")
def merge(adapter, base, out_dir, dtype):
    """Merge a LoRA adapter into its base model; the result loads with plain transformers.

    The merged folder holds the full LlavaForConditionalGeneration and its processor (with radtune's chat
    template), so `LlavaForConditionalGeneration.from_pretrained(OUT)` needs neither peft nor radtune.
    """
    from radtune.llava_vqa.inference import resolve

    if not (resolve(adapter) / "adapter_config.json").is_file():
        raise click.ClickException(f"{adapter} is not a LoRA adapter (no adapter_config.json)")
    model, processor = _load(adapter, base, dtype, False)
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    click.echo(f"wrote merged model to {out_dir}")
