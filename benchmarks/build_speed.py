"""How close `radtune data build` comes to the cost of decoding and resizing its images, and whether its memory
stays flat as the dataset grows.

    python benchmarks/build_speed.py                     # 120 images of 1024 px, then 5x as many
    python benchmarks/build_speed.py --images 1000 --num-proc 8 --max-side 512

It writes a folder of generated 1024x1024 grayscale PNGs with a `metadata.csv` (the `imagefolder-csv` layout)
and prints:

(a) build wall time / (sum of pure decode+resize time / cores)   target <= 1.25
    the pure time decodes and resizes every image once in one process, the least work any build must do;
    "cores" is --num-proc, the processes the build decodes with;
    also printed: the same ratio in CPU seconds (the build's process tree, less the libraries' import, over the
    pure loop), which a busy machine does not distort as it does wall time. The build process measures it itself,
    around the `build_dataset` call (its own CPU time plus its reaped workers'); `cpu_ratio_whole_process` is the
    older, noisier estimate: the whole process tree less a separate import-only run (whose CPU time alone varies
    by a few tenths of a second from run to run on a shared machine);
(b) peak RSS of a build of 5x the images / peak RSS of a build of 1x   target <= 1.3
    each build runs in its own subprocess; its peak is the largest sum of the resident memory of the build
    process and its workers, sampled every 20 ms; also printed without the pages of memory-mapped files (the
    Arrow cache datasets reads through mmap), which RSS counts but the kernel can drop at any time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def pure_decode_resize_seconds(folder: Path, max_side: int) -> tuple[float, float]:
    """Decode and resize every PNG once, in this process: the floor for any build. Returns (wall, CPU) seconds."""
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The libraries are imported before the clock starts: their import time is a constant, not a cost per image.
_IMPORTS = """
import sys, time
import datasets
from radtune.dataprep.build import build_dataset
"""
_BUILD = _IMPORTS + """
import resource

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
    src: Path | None, out: Path | None, max_side: int, num_proc: int, hf_home: Path
) -> tuple[float, float, float, float, float, float]:
    """Build in a subprocess (`src=None`: only import the libraries).

    Returns (wall seconds of the whole process, build seconds, peak tree RSS in MiB, CPU seconds of the process
    and its workers, peak tree RSS less file-backed shared pages in MiB, CPU seconds of the build call and its
    workers as the build process measured them).
    """
    import psutil

    env = {**os.environ, "HF_HOME": str(hf_home), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    script = _BUILD if src is not None else _IMPORTS + "print('BUILD_SECONDS 0')"
    cpu_before = _children_cpu()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(src), str(out), str(max_side), str(num_proc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    root = psutil.Process(process.pid)
    peak = peak_anon = 0
    while process.poll() is None:
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
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    if process.returncode != 0:
        raise SystemExit(f"build failed:\n{stderr[-4000:]}")
    values = {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines() if line.startswith("BUILD_")}
    return wall, values["BUILD_SECONDS"], peak / 2**20, cpu, peak_anon / 2**20, values.get("BUILD_CPU_SECONDS", 0.0)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120, help="images in the 1x build (the 5x build has 5 times as many)")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated PNGs")
    parser.add_argument("--max-side", type=int, default=512, help="--max-side of the build")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="processes the build decodes with")
    parser.add_argument("--scale", type=int, default=5, help="size of the large build relative to the small one")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write images (default: a temp folder)")
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="radtune-build-speed-"))
    try:
        small = make_images(work / "small", args.images, args.size)
        large = make_images(work / "large", args.images * args.scale, args.size, seed=1)
        pure, pure_cpu = pure_decode_resize_seconds(small, args.max_side)
        hf = work / "hf"
        import_cpu = run_build(None, None, args.max_side, args.num_proc, hf)[3]
        small_run = run_build(small, work / "out-small", args.max_side, args.num_proc, hf)
        large_run = run_build(large, work / "out-large", args.max_side, args.num_proc, hf)
        wall_small, build_small, rss_small, cpu_small, anon_small, build_cpu_small = small_run
        wall_large, build_large, rss_large, cpu_large, anon_large, build_cpu_large = large_run
        floor = pure / args.num_proc
        result = {
            "images": args.images,
            "scale": args.scale,
            "num_proc": args.num_proc,
            "max_side": args.max_side,
            "pure_decode_resize_s": round(pure, 3),
            "build_s": round(build_small, 3),
            "process_wall_s": round(wall_small, 3),
            "speed_ratio": round(build_small / floor, 3),
            "build_large_s": round(build_large, 3),
            "speed_ratio_large": round(build_large / (floor * args.scale), 3),
            # CPU seconds (load-independent): the build call and its workers, measured by the build process, over the
            # pure loop's CPU seconds.
            "cpu_ratio": round(build_cpu_small / pure_cpu, 3),
            "cpu_ratio_large": round(build_cpu_large / (pure_cpu * args.scale), 3),
            # The same from outside: the whole process tree less a separate import-only run (noisier).
            "cpu_ratio_whole_process": round((cpu_small - import_cpu) / pure_cpu, 3),
            "cpu_ratio_whole_process_large": round((cpu_large - import_cpu) / (pure_cpu * args.scale), 3),
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
