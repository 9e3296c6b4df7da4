"""Generation metrics during training, streamed: at each evaluation, generate for a bounded number of eval rows,
batch by batch, keep only the strings the metrics need, and score them.

The Trainer's own route to generation metrics (`compute_metrics` with `predict_with_generate`, or logits with
`eval_accumulation_steps`) concatenates every batch's predictions and labels into padded arrays before scoring
them, so its memory grows with the eval split: the out-of-memory that users of `compute_metrics` meet. Here each
batch is generated, decoded and reduced to a small record (the prediction and its references), then dropped;
memory is bounded by the batch, not by the number of items.

`GenerationEvalMixin` plugs this into any `Trainer` subclass (`Seq2SeqTrainer`, TRL's `SFTTrainer`): when the
Trainer evaluates (`eval_strategy` / `eval_steps`), the metrics join the eval loss as `eval_<name>` (a `/` in a
metric name becomes `_`), so they are logged to every tracker (TensorBoard shows them as `eval/<name>`), reach the
callbacks, and can be `metric_for_best_model`, e.g. `strict_closed_accuracy` or `cider`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Rows generated at each evaluation during training, unless a recipe says otherwise.
GENERATION_EVAL_SAMPLES = 64


@dataclass
class GenerationEval:
    """What a trainer generates and scores at each evaluation.

    Attributes:
        dataset (`datasets.Dataset`): the eval rows, in the task's raw format (images undecoded or decoded).
        generate (`Callable[[model, datasets.Dataset], list]`): for a batch of rows (`dataset.select(indices)`),
            one small record per row, e.g. `(prediction, reference)`; it must keep no tensors.
        score (`Callable[[list], dict[str, float]]`): the metrics of all records, in row order.
        max_samples (`int`, *optional*, defaults to `64`): generate for the first this many rows; `0` disables.
        batch_size (`int`, *optional*, defaults to `8`): rows per `generate` call.
    """

    dataset: Any
    generate: Callable[[Any, Any], list]
    score: Callable[[list], dict[str, float]]
    max_samples: int = 64
    batch_size: int = 8

    def __post_init__(self):
        if self.max_samples < 0:
            raise ValueError(f"max_samples must be >= 0 (0 disables), got {self.max_samples}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def shard_indices(n: int, num_processes: int, process_index: int) -> tuple[list[int], int]:
    """This process's contiguous share of rows `0..n-1`, padded so that every process gets as many.

    Under ZeRO-3 or FSDP every process must run the same number of `generate` calls (they gather the sharded
    weights together), so a short share repeats its last row; only the first `n_real` results are kept.

    Returns:
        `(indices, n_real)`: `ceil(n / num_processes)` row indices and how many of them are this process's own.
    """
    per_process = math.ceil(n / num_processes) if n else 0
    start = min(process_index * per_process, n)
    own = list(range(start, min(start + per_process, n)))
    pad = own[-1] if own else max(n - 1, 0)
    return own + [pad] * (per_process - len(own)), len(own)


def choose_eval_split(splits, eval_split: str | None, test_split: str | None) -> str | None:
    """The split to evaluate on during training: `eval_split` when the dataset has it, else `test_split` (with a
    warning: the test split then selects the model, so its numbers are no longer held out), else `None`."""
    import warnings

    if eval_split and eval_split in splits:
        return eval_split
    if test_split and test_split in splits:
        warnings.warn(
            f"no {eval_split!r} split: evaluating during training on the test split {test_split!r}; when it selects "
            "the model (metric_for_best_model), its final numbers are not a held-out estimate",
            stacklevel=2,
        )
        return test_split
    return None


def run_generation_eval(model, spec: GenerationEval, accelerator=None, progress: bool = True) -> dict[str, float]:
    """Generate for the first `spec.max_samples` rows of `spec.dataset`, batch by batch, and score the records.

    Args:
        model: the model to generate with (unwrapped from DDP; in eval mode).
        spec (`GenerationEval`): rows, generate function, scorer, bounds.
        accelerator (`accelerate.Accelerator`, *optional*): with several processes each generates for its share of
            the rows and the records are gathered, so every process returns the same metrics.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar (on the main process).

    Returns:
        `dict[str, float]`: `spec.score`'s metrics of the generated records.
    """
    from tqdm.auto import tqdm

    n = min(spec.max_samples, len(spec.dataset))
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0
    indices, n_real = shard_indices(n, num_processes, process_index)
    records: list = []
    starts = range(0, len(indices), spec.batch_size)
    for start in tqdm(starts, desc="generation eval", unit="batch", leave=False,
                      disable=not progress or process_index != 0):  # fmt: skip
        batch = indices[start : start + spec.batch_size]
        batch_records = spec.generate(model, spec.dataset.select(batch))
        if len(batch_records) != len(batch):
            raise ValueError(f"generate returned {len(batch_records)} records for {len(batch)} rows")
        records += batch_records
    records = records[:n_real]
    if num_processes > 1:
        from accelerate.utils import gather_object

        records = gather_object([records])  # one list per process, in process order = row order
        records = [record for share in records for record in share]
    return spec.score(records)


def metric_names(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """`{prefix}_{name}` for every numeric metric, `/` replaced by `_` (`strict/closed_accuracy` →
    `eval_strict_closed_accuracy`), as the Trainer names eval metrics and `metric_for_best_model` looks them up."""
    return {
        f"{prefix}_{name.replace('/', '_')}": float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


class GenerationEvalMixin:
    """A `Trainer` mixin: each evaluation of the trainer's own eval split also runs `run_generation_eval`.

    Put it first among the bases (`class MyTrainer(GenerationEvalMixin, SFTTrainer)`) and pass
    `generation_eval=GenerationEval(...)` (or `None` for the parent's behaviour). The generation metrics are added
    to the metrics of the Trainer's evaluation loop, which then runs with `compute_metrics=None`: it gathers the
    eval loss only, never logits or generated ids. `trainer.evaluate(some_other_dataset)` is not affected.
    """

    def __init__(self, *args, generation_eval: GenerationEval | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generation_eval = generation_eval
        self._generation_eval_prefix: str | None = None

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval",
                 **kwargs):  # fmt: skip
        enabled = self.generation_eval is not None and self.generation_eval.max_samples > 0
        self._generation_eval_prefix = metric_key_prefix if enabled and eval_dataset is None else None
        try:
            return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys,
                                    metric_key_prefix=metric_key_prefix, **kwargs)  # fmt: skip
        finally:
            self._generation_eval_prefix = None

    def evaluation_loop(self, dataloader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"):  # fmt: skip
        output = super().evaluation_loop(dataloader, description, prediction_loss_only=prediction_loss_only,
                                         ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)  # fmt: skip
        prefix = self._generation_eval_prefix
        if prefix is not None:
            self._generation_eval_prefix = None  # once per evaluate(), even if a parent loops
            model = self.accelerator.unwrap_model(self.model)
            model.eval()  # the training step switches back to train mode
            metrics = run_generation_eval(model, self.generation_eval, self.accelerator,
                                          progress=not self.args.disable_tqdm)  # fmt: skip
            output.metrics.update(metric_names(metrics, prefix))
        return output
