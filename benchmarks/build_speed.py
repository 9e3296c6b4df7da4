"""How close `radtune data build` comes to the cost of decoding and resizing its images, and whether its memory
stays flat as the dataset grows.

    python benchmarks/build_speed.py                     # 300 images of 1024 px, then 5x as many
    python benchmarks/build_speed.py --images 1000 --num-proc 8 --max-side 512

It writes a folder of generated 1024x1024 grayscale PNGs with a `metadata.csv` (the `imagefolder-csv` layout)
and prints:

(a) build wall time / (sum of pure decode+resize time / cores)   target <= 1.25
    the pure time decodes and resizes every image once in one process, the least work any build must do;
    "cores" is --num-proc, the processes the build decodes with;
    also printed: the same ratio in CPU seconds (the build call and its reaped workers, measured by the build
    process itself, over the pure loop's), which a busy machine distorts less than wall time.
    Each size is timed as --repeat (default 3) pairs of (pure loop, build) run back to back on the same images,
    and the median of the pairs' ratios is kept: this virtual machine's speed drifts by 10-15% over minutes, its
    kernel drops cached files after a while (the images are read into the page cache before each run), and
    timed builds run unobserved (sampling memory takes CPU from the build).
(b) peak RSS of a build of 5x the images / peak RSS of a build of 1x   target <= 1.3
    each build runs in its own subprocess; its peak is the largest sum of the resident memory of the build
    process and its workers, sampled every 20 ms; also printed without the pages of memory-mapped files (the
    Arrow cache datasets reads through mmap), which RSS counts but the kernel can drop at any time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """`count` radiograph-like 8-bit PNGs (smooth anatomy-ish shapes plus noise) and a metadata.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    lines = ["file_name,text,patient_id"]
    for n in range(count):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
        body = np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.5) / 0.45) ** 2))
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (r * r)))
        pixels = 120 * body + 60 * blob + rng.normal(0, 6, size=(size, size))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(folder / f"{n:06d}.png")
        lines.append(f"{n:06d}.png,generated image {n},P{n // 3}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def warm_page_cache(folder: Path) -> None:
    """Read every file of `folder` so that the timed run reads them from memory, as a build of a dataset just
    downloaded or read before would. This machine's kernel reclaims page-cache pages unused for a while (DAMON),
    so images written minutes earlier may be read from disk again, which made single runs up to 25% slower."""
    for path in folder.iterdir():
        path.read_bytes()


def pure_decode_resize_seconds(folder: Path, max_side: int) -> tuple[float, float]:
    """Decode and resize every PNG once, in this process: the floor for any build. Returns (wall, CPU) seconds."""
    warm_page_cache(folder)
    total = 0.0
    cpu_start = time.process_time()
    for path in sorted(folder.glob("*.png")):
        start = time.perf_counter()
        with Image.open(path) as image:
            image.load()
            scale = max_side / max(image.size)
            image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS,
                         reducing_gap=3.0)
        total += time.perf_counter() - start
    return total, time.process_time() - cpu_start


# The libraries are imported before the clock starts: their import time is a constant, not a cost per image.
_BUILD = """
import resource, sys, time
import datasets
from radtune.dataprep.build import build_dataset

def tree_cpu():
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime

src, out, max_side, num_proc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cpu_start = tree_cpu()
start = time.perf_counter()
build_dataset("imagefolder-csv", src, out, max_side=max_side, num_proc=num_proc)
print("BUILD_SECONDS", time.perf_counter() - start)
print("BUILD_CPU_SECONDS", tree_cpu() - cpu_start)
"""


def run_build(
    src: Path, out: Path, max_side: int, num_proc: int, hf_home: Path, sample_memory: bool = False
) -> tuple[float, float, float, float]:
    """Build in a subprocess.

    With `sample_memory`, this process samples the build's memory every 20 ms: about 1.2 ms of CPU a sample, so
    6% of a core taken from the build on a machine whose cores the build fills; timed runs do not sample (their
    peaks are returned as 0).

    Returns (build seconds, CPU seconds of the build call and its workers as the build process measured them,
    peak tree RSS in MiB, the same less file-backed shared pages in MiB).
    """
    import psutil

    shutil.rmtree(out, ignore_errors=True)  # an earlier repeat's output
    warm_page_cache(src)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    script = _BUILD
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(src), str(out), str(max_side), str(num_proc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    root = psutil.Process(process.pid)
    peak = peak_anon = 0
    while sample_memory and process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            rss = anon = 0
            for member in tree:
                try:
                    info = member.memory_info()
                    rss += info.rss
                    anon += info.rss - info.shared
                except psutil.Error:
                    pass
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        except psutil.Error:
            pass
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"build failed:\n{stderr[-4000:]}")
    values = {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines() if line.startswith("BUILD_")}
    return values["BUILD_SECONDS"], values["BUILD_CPU_SECONDS"], peak / 2**20, peak_anon / 2**20


def paired_ratios(folder: Path, out: Path, args, hf_home: Path) -> dict:
    """Time the pure loop and a build of the same images back to back, `args.repeat` times; the ratios of each
    pair, and their median. Pairing matters: this machine's speed drifts by 10-15% over minutes (the same pure
    loop took 7.2 s, then 8.1 s a quarter of an hour later), so a floor measured once, or on other images, and a
    build measured later compare two machines."""
    pairs = []
    for _ in range(args.repeat):
        pure, pure_cpu = pure_decode_resize_seconds(folder, args.max_side)
        build, build_cpu, _, _ = run_build(folder, out, args.max_side, args.num_proc, hf_home)
        pairs.append({"pure_s": round(pure, 3), "build_s": round(build, 3),
                      "ratio": round(build / (pure / args.num_proc), 3), "cpu_ratio": round(build_cpu / pure_cpu, 3)})  # fmt: skip
    return {"ratio": statistics.median(p["ratio"] for p in pairs),
            "cpu_ratio": statistics.median(p["cpu_ratio"] for p in pairs), "runs": pairs}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 300: about the smallest real dataset radtune reads (VQA-RAD has 315 images). A build of 120 images lasts one
    # second, a tenth of it start-up (staging, forking, warming caches, metadata), which that size magnifies.
    parser.add_argument("--images", type=int, default=300, help="images in the 1x build (the 5x build has 5 times as many)")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated PNGs")
    parser.add_argument("--max-side", type=int, default=512, help="--max-side of the build")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="processes the build decodes with")
    parser.add_argument("--scale", type=int, default=5, help="size of the large build relative to the small one")
    parser.add_argument("--repeat", type=int, default=3, help="timed (pure, build) pairs per size; the median is kept")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write images (default: a temp folder)")
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="radtune-build-speed-"))
    try:
        small = make_images(work / "small", args.images, args.size)
        large = make_images(work / "large", args.images * args.scale, args.size, seed=1)
        hf = work / "hf"
        speed_small = paired_ratios(small, work / "out-small", args, hf)
        speed_large = paired_ratios(large, work / "out-large", args, hf)
        # Memory: one more build of each size, sampled (timed builds are not: see `run_build`).
        _, _, rss_small, anon_small = run_build(small, work / "out-small", args.max_side, args.num_proc, hf,
                                                      sample_memory=True)  # fmt: skip
        _, _, rss_large, anon_large = run_build(large, work / "out-large", args.max_side, args.num_proc, hf,
                                                      sample_memory=True)  # fmt: skip
        result = {
            "images": args.images,
            "scale": args.scale,
            "repeat": args.repeat,
            "num_proc": args.num_proc,
            "max_side": args.max_side,
            "speed_ratio": speed_small["ratio"],
            "speed_ratio_large": speed_large["ratio"],
            # CPU seconds: the build call and its workers, measured by the build process, over the pure loop's.
            "cpu_ratio": speed_small["cpu_ratio"],
            "cpu_ratio_large": speed_large["cpu_ratio"],
            "runs_small": speed_small["runs"],
            "runs_large": speed_large["runs"],
            "load_average_1min": round(os.getloadavg()[0], 2),
            "peak_rss_small_mib": round(rss_small, 1),
            "peak_rss_large_mib": round(rss_large, 1),
            "rss_ratio": round(rss_large / rss_small, 3),
            # Without the memory-mapped Arrow files' pages (page cache the kernel can drop), counted in RSS.
            "peak_anon_small_mib": round(anon_small, 1),
            "peak_anon_large_mib": round(anon_large, 1),
            "anon_ratio": round(anon_large / anon_small, 3),
        }
        print(json.dumps(result, indent=2))
        print(f"(a) build time / (pure decode+resize / cores) = {result['speed_ratio']:.3f} "
              f"(at {args.scale}x: {result['speed_ratio_large']:.3f})   target <= 1.25")
        print(f"    CPU time of the build / CPU time of pure decode+resize = {result['cpu_ratio']:.3f} "
              f"(at {args.scale}x: {result['cpu_ratio_large']:.3f}); 1-minute load average {result['load_average_1min']}")
        print(f"(b) peak RSS at {args.scale}x / at 1x = {result['rss_ratio']:.3f}   target <= 1.3")
        print(f"    without memory-mapped file pages: {result['anon_ratio']:.3f}")
        return result
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
