"""Plots every task writes: the loss curve of a run, from the Trainer's `log_history`."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def loss_points(log_history: list[dict]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The `(step, loss)` points of the training loss and of the evaluation loss in a Trainer's `log_history`.

    The end-of-training summary (`train_loss`, the mean over the run) is not a point of the curve.
    """
    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row and "step" in row]
    evaluation = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row and "step" in row]
    return train, evaluation


def plot_loss_curve(log_history: list[dict], out_path: str | Path, title: str | None = None) -> Path | None:
    """Write a PNG of training (and evaluation, when logged) loss against the global step.

    A curve needs at least two logged losses (training and evaluation together). With fewer it writes nothing
    and logs one line saying why and how to get one (`--logging_steps`).

    Args:
        log_history (`list[dict]`): `trainer.state.log_history`.
        out_path (`str` or `Path`): the PNG to write.
        title (`str`, *optional*): plot title.

    Returns:
        `Path` of the PNG, or `None` when the history holds fewer than two losses.
    """
    train, evaluation = loss_points(log_history)
    if len(train) + len(evaluation) < 2:
        logger.warning(_no_curve_notice(log_history, len(train) + len(evaluation), Path(out_path)))
        return None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for points, label in ((train, "train loss"), (evaluation, "eval loss")):
        if points:
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, marker="o" if len(points) < 30 else None, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(title or "loss")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    plt.close(figure)
    return out_path


def _no_curve_notice(log_history: list[dict], n_points: int, out_path: Path) -> str:
    steps = max((row["step"] for row in log_history if isinstance(row.get("step"), int)), default=0)
    logged = f"{n_points} loss value{'' if n_points == 1 else 's'}"
    if steps >= 2:
        advice = f"pass --logging_steps {max(1, steps // 2)} (or lower) to log at least two"
    else:
        advice = "train for more steps with a --logging_steps below their number to get one"
    return f"no loss curve ({out_path.name}): the run logged {logged} over {steps} steps; {advice}"
