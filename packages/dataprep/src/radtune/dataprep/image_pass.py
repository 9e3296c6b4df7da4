"""The build's image pass: decode every record's image in `num_proc` processes and write each kept row straight
into the Arrow shards of its split, so the image bytes are written once, by the process that made them.

Each process takes one contiguous range of the records, so the shards of a split, taken in process order, keep
the source's order. For every record it decodes, checks, normalises, resizes and hashes the image
(`prepare_image`), assigns the split (a function of the record alone: its official split, else the hash of its
patient key) and appends the row to `<split>/part-<process>-<n>.arrow` with `datasets`' own `ArrowWriter`, unless
the record is skipped or repeats an image seen earlier in its range and split (an official test row is always
written). It sends back only the light columns of its
records (skip reason and detail, pixel hash, split, which shard holds each written row). A duplicate whose first
copy lies in an earlier process's range is only known once every range is done: `finish_splits` rewrites the
few shards that hold one, then names the shards and writes the metadata `load_from_disk` reads.

The build process decodes the first range itself and forks one process per other range (no re-import; the
records file is memory-mapped, not copied); they report progress through shared counters and stop early when
another one has failed. A worker dies with the build process, even when that is killed outright (`_die_with_parent`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

from .image_processing import ImageSkip, prepare_image
from .splits import SPLIT_NAMES, assign_splits

# Records handed to `_prepare_batch` at a time: also the step of progress and of stopping early.
DECODE_BATCH_SIZE = 8
# A shard writer writes a record batch every this many rows or buffered bytes, whichever comes first, so a process
# holds few encoded images whatever the size of the dataset.
WRITER_BATCH_ROWS = 64
WRITER_BATCH_BYTES = 4 * 2**20

# Set in each worker process by `_init_worker`.
_PROGRESS = None
_STOP = None


def open_table(path: str | Path):
    """The Arrow stream file at `path` as a memory-mapped `pyarrow.Table` (nothing is read until used)."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all()


@dataclasses.dataclass(frozen=True)
class ImagePass:
    """What every process needs (pickled once per process).

    Args:
        records_path (`str`): the Arrow file of the records (see `build._record_features`).
        out_dir (`str`): the dataset folder being staged; shards go to its split folders.
        columns (`tuple[str, ...]`): record columns the dataset keeps beside `image`, in order.
        features (`datasets.Features`): the features of a dataset row (`image` then `columns`).
        dedupe_on (`tuple[str, ...]`): record columns that, with the pixel hash, identify a duplicate.
        ratios (`tuple[float, float, float]`): train/validation/test ratios of the hash split.
        max_side (`int`, *optional*), max_pixels (`int`): as in `prepare_image`.
        max_shard_bytes (`int`): a shard past this size is closed and the next rows go to a new one.
    """

    records_path: str
    out_dir: str
    columns: tuple[str, ...]
    features: object
    dedupe_on: tuple[str, ...]
    ratios: tuple[float, float, float]
    max_side: int | None
    max_pixels: int
    max_shard_bytes: int


@dataclasses.dataclass
class RangeResult:
    """The light columns of one range of records, and the shards it wrote: `shards[split]` lists
    `(file name, indices of the records it holds)` in writing order."""

    start: int
    reasons: list = dataclasses.field(default_factory=list)
    details: list = dataclasses.field(default_factory=list)
    hashes: list = dataclasses.field(default_factory=list)
    splits: list = dataclasses.field(default_factory=list)
    shards: dict = dataclasses.field(default_factory=dict)


def _prepare_batch(batch: dict, max_side: int | None, max_pixels: int) -> dict:
    """Prepare the images of a batch of records (columns as lists); a bad image gets a skip reason, never raises."""
    images, details, hashes, reasons = [], [], [], []
    columns = (batch["image_path"], batch["image_bytes"], batch["skip_reason"], batch["skip_detail"])
    for path, data, reason, detail in zip(*columns, strict=True):
        image = digest = None
        if reason is None:
            try:
                prepared = prepare_image(data if data is not None else path, max_side=max_side, max_pixels=max_pixels)
                image, digest = prepared.data, prepared.pixel_hash
            except ImageSkip as skip:
                reason, detail = skip.reason, skip.detail
        images.append(image)
        details.append(detail)
        hashes.append(digest)
        reasons.append(reason)
    return {"image": images, "skip_detail": details, "image_hash": hashes, "skip_reason": reasons}


class _ShardWriter:
    """Appends the rows of one split to `part-<worker>-<n>.arrow` files, starting a new file past `max_bytes`."""

    def __init__(self, folder: Path, worker: int, features, max_bytes: int):
        self.folder, self.worker, self.features, self.max_bytes = folder, worker, features, max_bytes
        self.shards: list[tuple[str, list[int]]] = []
        self._writer = None
        self._bytes = self._buffered = 0

    def write(self, index: int, row: dict, size: int) -> None:
        if self._writer is None or self._bytes >= self.max_bytes:
            self._close_file()
            from datasets.arrow_writer import ArrowWriter

            name = f"part-{self.worker:05d}-{len(self.shards):05d}.arrow"
            self._writer = ArrowWriter(
                features=self.features, path=str(self.folder / name), writer_batch_size=WRITER_BATCH_ROWS
            )
            self.shards.append((name, []))
            self._bytes = 0
        self._writer.write(row)
        self.shards[-1][1].append(index)
        self._bytes += size
        self._buffered = 0 if not self._writer.current_examples else self._buffered + size
        if self._buffered >= WRITER_BATCH_BYTES:
            self._writer.write_examples_on_file()
            self._buffered = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.finalize()
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._close_file()


def process_range(
    task: ImagePass, worker: int, start: int, stop: int, progress: Callable[[int], object] | None = None
) -> RangeResult:
    """Prepare the images of records `start:stop` and write the kept rows into the split folders of `task.out_dir`.

    Args:
        task (`ImagePass`): the pass.
        worker (`int`): this range's number, in the shard names.
        start (`int`), stop (`int`): the range of record indices.
        progress (`Callable`, *optional*): called with the number of records done after each batch (in a worker
            process: its shared counter).
    """
    records = open_table(task.records_path)
    out_dir = Path(task.out_dir)
    writers = {name: _ShardWriter(out_dir / name, worker, task.features, task.max_shard_bytes) for name in SPLIT_NAMES}
    result = RangeResult(start=start)
    seen: set[tuple] = set()
    try:
        for batch_start in range(start, stop, DECODE_BATCH_SIZE):
            if _STOP is not None and _STOP.value:
                break
            batch = records.slice(batch_start, min(DECODE_BATCH_SIZE, stop - batch_start)).to_pydict()
            prepared = _prepare_batch(batch, task.max_side, task.max_pixels)
            size = len(prepared["image"])
            indices = range(batch_start, batch_start + size)
            group_keys = [
                batch["patient_id"][j] or batch["study_id"][j] or batch["id"][j] or batch["image_path"][j] or str(i)
                for j, i in enumerate(indices)
            ]
            splits = assign_splits(batch["split"], group_keys, task.ratios)
            for j, index in enumerate(indices):
                data, reason = prepared["image"][j], prepared["skip_reason"][j]
                if reason is None:
                    # A copy in another split is written: the build decides which copy leaves (`build._dedupe`).
                    # Rows of an official test split are all written: a test split is never altered.
                    key = (splits[j], prepared["image_hash"][j], *(batch[name][j] for name in task.dedupe_on))
                    if key not in seen or batch["split"][j] == "test":
                        seen.add(key)
                        row = {"image": {"bytes": data, "path": None}}
                        row.update((name, batch[name][j]) for name in task.columns)
                        writers[splits[j]].write(index, row, len(data))
            result.reasons += prepared["skip_reason"]
            result.details += prepared["skip_detail"]
            result.hashes += prepared["image_hash"]
            result.splits += splits
            if progress is not None:
                progress(size)
            else:
                _PROGRESS[worker] += size
    finally:
        for writer in writers.values():
            writer.close()
    result.shards = {name: writer.shards for name, writer in writers.items()}
    return result


def _init_worker(progress, stop, parent: int) -> None:
    global _PROGRESS, _STOP
    _PROGRESS, _STOP = progress, stop
    _die_with_parent(parent)


# prctl(2) option: the signal the kernel sends this process when the thread that created it ends.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this worker as soon as the build process `parent` ends, however it ends.

    A killed build (SIGKILL, an out-of-memory kill) runs no clean-up, and `ProcessPoolExecutor`'s workers would go on
    decoding for nobody. On Linux the kernel does it: `prctl(PR_SET_PDEATHSIG, SIGKILL)` has the worker killed the
    moment its parent ends, even while it is deep in a decoder holding the GIL, at no cost while the parent lives.
    Elsewhere (or if the call fails) a daemon thread polls `os.getppid()` twice a second: the parent ended when the
    worker was re-parented. Either way the check after setting it up catches a parent that ended before.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="watch-build-process", daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def run_image_pass(task: ImagePass, total: int, num_proc: int = 1) -> list[RangeResult]:
    """Run the pass over all `total` records in up to `num_proc` processes: this one and `num_proc - 1` forked.

    Returns:
        `list[RangeResult]`: one per range, in record order.

    Raises:
        whatever a process raised (the others stop at their next batch); `BrokenProcessPool` when one died.
    """
    from datasets.utils import tqdm as hf_tqdm
    from PIL import Image

    for name in SPLIT_NAMES:
        (Path(task.out_dir) / name).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(num_proc or 1, total))
    bounds = [total * w // workers for w in range(workers + 1)]
    with hf_tqdm(total=total, desc="Decoding images", unit=" images") as bar:
        if workers == 1:
            return [process_range(task, 0, 0, total, progress=bar.update)]
        # Forked workers start at once with every library already imported (spawn would import them again), and
        # with Pillow's common formats registered. Fork only on Linux: macOS's system libraries are not fork-safe.
        # This process decodes the first range itself.
        Image.preinit()
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
        progress, stop = context.RawArray("q", workers), context.RawValue("b", 0)
        with ProcessPoolExecutor(
            workers - 1, mp_context=context, initializer=_init_worker, initargs=(progress, stop, os.getpid())
        ) as pool:
            futures = [pool.submit(process_range, task, w, bounds[w], bounds[w + 1]) for w in range(1, workers)]

            def update(done: int) -> None:
                progress[0] += done
                bar.update(sum(progress) - bar.n)
                for future in futures:
                    if future.done():
                        future.result()  # raises a worker's error here, which stops this range too

            try:
                first = process_range(task, 0, 0, bounds[1], progress=update)
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                    bar.update(sum(progress) - bar.n)
                    for future in done:
                        future.result()
            except BaseException:
                stop.value = 1
                raise
        return [first, *(future.result() for future in futures)]


def finish_splits(out_dir: str | Path, results: Sequence[RangeResult], keep: set[int], features) -> dict[str, int]:
    """Turn the shards of the pass into a `save_to_disk` folder holding only the rows in `keep`.

    Shards holding a row not in `keep` (a duplicate found across ranges) are rewritten without it; empty shards and
    splits are removed; the shards of each split are renamed `data-<i>-of-<n>.arrow` in record order; each split
    gets the `state.json` and `dataset_info.json` that `Dataset.save_to_disk` writes for a new dataset, and the
    folder the `dataset_dict.json` of `DatasetDict.save_to_disk`, so `load_from_disk` opens it.

    Returns:
        `dict[str, int]`: rows per non-empty split, in split order.
    """
    from datasets import DatasetInfo
    from datasets.fingerprint import generate_random_fingerprint

    out_dir = Path(out_dir)
    counts: dict[str, int] = {}
    for name in SPLIT_NAMES:
        folder = out_dir / name
        files = []
        for result in results:
            for file_name, indices in result.shards.get(name, []):
                kept = [index in keep for index in indices]
                if not any(kept):
                    (folder / file_name).unlink()
                    continue
                if not all(kept):
                    _drop_rows(folder / file_name, kept)
                files.append((file_name, sum(kept)))
        if not files:
            for leftover in folder.iterdir():
                leftover.unlink()
            folder.rmdir()
            continue
        data_files = []
        for number, (file_name, _) in enumerate(files):
            final = f"data-{number:05d}-of-{len(files):05d}.arrow"
            os.replace(folder / file_name, folder / final)
            data_files.append({"filename": final})
        state = {
            "_data_files": data_files,
            "_fingerprint": generate_random_fingerprint(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        DatasetInfo(features=features).write_to_directory(str(folder), pretty_print=True)
        counts[name] = sum(rows for _, rows in files)
    (out_dir / "dataset_dict.json").write_text(json.dumps({"splits": list(counts)}), encoding="utf-8")
    return counts


def _drop_rows(path: Path, kept: list[bool]) -> None:
    """Rewrite the Arrow stream at `path` with only the rows whose `kept` is true, a record batch at a time."""
    import pyarrow as pa

    partial = path.with_name(path.name + ".partial")
    offset = 0
    with pa.memory_map(str(path)) as source, pa.OSFile(str(partial), "wb") as sink:
        reader = pa.ipc.open_stream(source)
        with pa.ipc.new_stream(sink, reader.schema) as writer:
            for batch in reader:
                mask = pa.array(kept[offset : offset + batch.num_rows], type=pa.bool_())
                offset += batch.num_rows
                writer.write_batch(batch.filter(mask))
    os.replace(partial, path)
