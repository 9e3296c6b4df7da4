"""The options every `radtune` evaluation command shares, with one name per concept (the README's table).

`--model` (a run folder, an adapter, a merged model or a Hub repo id), `--base-model`, `--dataset`, `--split`,
`--out`, `--text-column`, `--image-column`, `--max-samples`, `--batch-size`, `--n-resamples`, `--device`, and
`--config FILE`: a YAML of the command's own option names whose values become defaults that flags override.

    @task.command("evaluate")
    @evaluation_options(base_model=True)
    @text_column_option("impression")
    def evaluate(model, base_model, dataset, split, out, max_samples, batch_size, n_resamples, device, text_column):
        ...
"""

from __future__ import annotations

from pathlib import Path

import click


def read_command_config(command: click.Command, path: str | Path) -> dict:
    """Defaults for `command` from a YAML file whose keys are its option names (`model`, `labels`, `max-samples`
    or `max_samples`, …).

    Raises:
        `click.BadParameter`: a missing file, or a key the command has no option for (the message names it and the
        closest known one).
    """
    import difflib

    import yaml

    path = Path(path)
    if not path.is_file():
        raise click.BadParameter(f"config file not found: {path}", param_hint="--config")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of option names to values", param_hint="--config")
    names = {}
    for param in command.params:
        if param.name == "config":
            continue
        names[param.name] = param.name
        for opt in param.opts:
            names[opt.lstrip("-").replace("-", "_")] = param.name
    for key in data:
        if str(key).replace("-", "_") not in names:
            close = difflib.get_close_matches(str(key).replace("-", "_"), list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise click.BadParameter(f"unknown key {key!r} in {path}{hint}", param_hint="--config")
    return {names[str(key).replace("-", "_")]: value for key, value in data.items()}


def _apply_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None and not ctx.resilient_parsing:
        ctx.default_map = {**(ctx.default_map or {}), **read_command_config(ctx.command, value)}


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_apply_config,
    help="A YAML file of this command's options (keys = option names); flags override it.",
)  # fmt: skip


def evaluation_options(*, base_model: bool = False, batch_size: int = 16):
    """The shared options of an evaluation command, in the README's order; the function receives `model`,
    (`base_model`,) `dataset`, `split`, `out`, `max_samples`, `batch_size`, `n_resamples` and `device`."""
    options = [
        config_option,
        click.option("--model", required=True,
                     help="A training run's folder, an adapter, a merged model or a Hub repo id."),  # fmt: skip
        click.option("--base-model", help="An adapter's base model, when not the one it recorded.") if base_model
        else None,
        click.option("--dataset", required=True, help="A `radtune data build`/`data qa` folder or a Hub dataset repo."),
        click.option("--split", default="test", show_default=True, help="Split to evaluate."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     help="Output folder (default: a new <model>/eval-<command>-<split> folder; the run's own files "
                     "are never overwritten)."),  # fmt: skip
        click.option("--max-samples", type=click.IntRange(min=1), help="Evaluate the first N rows only."),
        click.option("--batch-size", type=click.IntRange(min=1), default=batch_size, show_default=True,
                     help="Rows per forward/generate call."),  # fmt: skip
        click.option("--n-resamples", type=click.IntRange(min=0), default=1000, show_default=True,
                     help="Bootstrap resamples for the 95% intervals (0: none)."),  # fmt: skip
        click.option("--device", help="cuda, cpu, … (default: CUDA when available)."),
    ]

    def decorate(function):
        for option in reversed([option for option in options if option is not None]):
            function = option(function)
        return function

    return decorate


def text_column_option(fallback: str):
    """`--text-column`: default the run's recorded `text_column`, else `fallback`."""
    return click.option("--text-column", help=f"Column of the reference texts (default: the one the run trained on, "
                        f"else {fallback!r}).")  # fmt: skip


def image_column_option():
    """`--image-column`: default the run's recorded `image_column`, else `image`."""
    return click.option("--image-column", help="Column of the images (default: the one the run trained on, else "
                        "'image', then the first of 'images').")  # fmt: skip


def recorded(value, info: dict, key: str, fallback):
    """`value` when given, else the run's recorded `info[key]`, else `fallback`."""
    if value is not None:
        return value
    return info.get(key) or fallback
