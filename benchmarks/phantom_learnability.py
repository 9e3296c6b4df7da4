"""Can a model see what the phantom generator draws? Held-out AUC per finding on 64-px phantoms.

    python benchmarks/phantom_learnability.py                       # CNN, 2000 train / 1000 test, 256 px
    python benchmarks/phantom_learnability.py --model logistic      # pixels-only logistic regression
    python benchmarks/phantom_learnability.py --n-train 600 --n-test 300 --image-size 128 --epochs 10

Prints one AUC per drawn finding (target >= 0.9 each: cardiomegaly, pleural effusion, pneumothorax,
nodule/mass, consolidation, support devices) and the time taken. The phantoms are drawn at --image-size
and downsampled to 64 px with a box filter; training uses indices 0..n_train-1, the test the next n_test.

Two models:
- `cnn` (default): a small four-layer convolutional network trained jointly on all findings (needs torch).
- `logistic`: one logistic regression per finding on the 64-px pixels plus max-pooled blob-filter responses
  (difference of Gaussians at two scales, the max over 4x4 and 8x8 cells), so a linear model also finds a nodule
  that can sit anywhere in the lungs. Seconds on a CPU.

`learnability()` is importable (tests/dataprep/test_phantoms.py runs the fast logistic check with it).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from radtune.dataprep.phantoms.findings import TARGETS, validate_prevalences


def _draw(job: tuple[int, int, int, int, tuple]) -> tuple[np.ndarray, list[bool]]:
    from PIL import Image

    from radtune.dataprep.phantoms.generator import draw_study

    index, seed, image_size, resolution, prevalences = job
    phantom, pixels = draw_study(index, seed, image_size, dict(prevalences))
    small = Image.fromarray(pixels).resize((resolution, resolution), Image.BOX)
    targets = phantom.targets()
    return np.asarray(small, dtype=np.uint8), [targets[name] for name in TARGETS]


def phantom_arrays(
    n: int,
    seed: int = 0,
    image_size: int = 256,
    resolution: int = 64,
    start: int = 0,
    prevalences: dict[str, float] | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(images, targets)`: uint8 `(n, resolution, resolution)` downsampled phantoms and bool `(n, 6)` targets."""
    prevalences = tuple(sorted(validate_prevalences(prevalences).items()))
    jobs = [(index, seed, image_size, resolution, prevalences) for index in range(start, start + n)]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and n >= 64:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_draw, jobs, chunksize=16)
    else:
        results = [_draw(job) for job in jobs]
    images = np.stack([image for image, _ in results])
    targets = np.array([row for _, row in results], dtype=bool)
    return images, targets


def blob_features(images: np.ndarray) -> np.ndarray:
    """`(n, features)`: the pixels scaled to [0, 1] and the max-pooled difference-of-Gaussians responses."""
    from scipy import ndimage

    rows = []
    for image in images.astype(np.float32) / 255.0:
        small = ndimage.gaussian_filter(image, 0.7) - ndimage.gaussian_filter(image, 2.5)
        large = ndimage.gaussian_filter(image, 1.5) - ndimage.gaussian_filter(image, 5.0)
        side = image.shape[0]
        rows.append(
            np.concatenate(
                [
                    image.ravel(),
                    small.reshape(side // 4, 4, side // 4, 4).max(axis=(1, 3)).ravel() * 4.0,
                    large.reshape(side // 8, 8, side // 8, 8).max(axis=(1, 3)).ravel() * 4.0,
                ]
            )
        )
    return np.stack(rows)


def _fit_logistic(train_x, train_y, test_x):
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = blob_features(train_x), blob_features(test_x)

    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-3
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    scores = np.zeros((len(test_x), train_y.shape[1]), dtype=np.float32)
    for column in range(train_y.shape[1]):
        model = LogisticRegression(C=0.01, max_iter=300).fit(train_x, train_y[:, column])
        scores[:, column] = model.decision_function(test_x)
    return scores


def _fit_cnn(train_x, train_y, test_x, seed: int, epochs: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    class Net(nn.Module):
        def __init__(self, outputs):
            super().__init__()
            self.features = nn.Sequential(block(1, 8), block(8, 16), block(16, 32), nn.Conv2d(32, 32, 3, padding=1))
            self.head = nn.Linear(64, outputs)

        def forward(self, x):
            x = torch.relu(self.features(x))
            # Max pooling keeps a small bright lesion visible wherever it sits; mean pooling the diffuse ones.
            return self.head(torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1))

    model = Net(train_y.shape[1])
    images = torch.from_numpy((train_x.astype(np.float32) / 255.0 - 0.5) / 0.25).unsqueeze(1)
    labels = torch.from_numpy(train_y.astype(np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(images) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for batch in order.split(64):
            x = images[batch]
            loss = loss_fn(model(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    test = torch.from_numpy((test_x.astype(np.float32) / 255.0 - 0.5) / 0.25).unsqueeze(1)
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in test.split(256)]).numpy()


def learnability(
    n_train: int = 2000,
    n_test: int = 1000,
    image_size: int = 256,
    resolution: int = 64,
    model: str = "logistic",
    seed: int = 0,
    epochs: int = 20,
    workers: int | None = None,
) -> dict[str, float]:
    """Held-out ROC AUC for each drawn finding (`TARGETS`) of a model trained on downsampled phantoms.

    Args:
        n_train (`int`, *optional*, defaults to `2000`): training phantoms (indices `0..n_train-1`).
        n_test (`int`, *optional*, defaults to `1000`): held-out phantoms (the next `n_test` indices).
        image_size (`int`, *optional*, defaults to `256`): size the phantoms are drawn at.
        resolution (`int`, *optional*, defaults to `64`): size they are downsampled to (box filter).
        model (`str`, *optional*, defaults to `"logistic"`): `"logistic"` or `"cnn"`.
        seed (`int`, *optional*, defaults to `0`): phantom seed and training seed.
        epochs (`int`, *optional*, defaults to `20`): CNN epochs.
        workers (`int`, *optional*): processes drawing the phantoms (default: CPU count, at most 8).

    Returns:
        `dict[str, float]`: target name → AUC on the held-out phantoms.
    """
    if model not in ("cnn", "logistic"):
        raise ValueError(f"model must be 'cnn' or 'logistic', got {model!r}")
    if n_train < 20 or n_test < 20:
        raise ValueError("n_train and n_test must each be at least 20 to estimate an AUC")
    from sklearn.metrics import roc_auc_score

    images, targets = phantom_arrays(n_train + n_test, seed, image_size, resolution, workers=workers)
    train_x, test_x = images[:n_train], images[n_train:]
    train_y, test_y = targets[:n_train], targets[n_train:]
    if model == "logistic":
        scores = _fit_logistic(train_x, train_y, test_x)
    else:
        scores = _fit_cnn(train_x, train_y, test_x, seed, epochs)
    aucs = {}
    for column, name in enumerate(TARGETS):
        if test_y[:, column].all() or not test_y[:, column].any():
            aucs[name] = float("nan")  # one class only in the held-out set
        else:
            aucs[name] = float(roc_auc_score(test_y[:, column], scores[:, column]))
    return aucs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--model", choices=("cnn", "logistic"), default="cnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    aucs = learnability(
        n_train=args.n_train,
        n_test=args.n_test,
        image_size=args.image_size,
        model=args.model,
        seed=args.seed,
        epochs=args.epochs,
        workers=args.workers,
    )
    print(f"{args.model} on 64-px phantoms drawn at {args.image_size} px: {args.n_train} train, {args.n_test} test")
    for name, auc in aucs.items():
        print(f"  {name:<17} AUC {auc:.3f}  {'ok' if auc >= 0.9 else 'BELOW 0.9'}")
    print(f"  minimum AUC {min(aucs.values()):.3f} (target >= 0.9); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
