"""Plots every task writes: the loss curve of a run, from the Trainer's `log_history`."""

from __future__ import annotations

from pathlib import Path


def plot_loss_curve(log_history: list[dict], out_path: str | Path, title: str | None = None) -> Path | None:
    """Write a PNG of training (and evaluation, when logged) loss against the global step.

    Args:
        log_history (`list[dict]`): `trainer.state.log_history`.
        out_path (`str` or `Path`): the PNG to write.
        title (`str`, *optional*): plot title.

    Returns:
        `Path` of the PNG, or `None` when the history holds no loss to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row and "step" in row]
    evaluation = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row and "step" in row]
    if not train and not evaluation:
        return None
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
