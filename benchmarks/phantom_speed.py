"""How fast `radtune data phantoms` writes 256-px phantoms on 2 cores, and whether its memory stays flat in n.

    python benchmarks/phantom_speed.py                        # 400 mimic-cxr phantoms, 2 workers
    python benchmarks/phantom_speed.py --n 1000 --layout nih --workers 4

Prints
(a) images/s by wall clock (target >= 50 with 2 workers), and the same rate from CPU time
    (n * workers / CPU seconds of the whole process tree), which a busy shared machine does not distort;
(b) peak RSS of the writing process for 4n phantoms / for n phantoms (target <= 1.1: streaming, flat in n).
Each run happens in its own subprocess, in a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

_RUN = """
import json, resource, sys, time
from radtune.dataprep.phantoms import generate_phantoms
n, layout, size, workers, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
start = time.perf_counter()
generate_phantoms(out, n=n, layout=layout, image_size=size, workers=workers)
wall = time.perf_counter() - start
me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
print(json.dumps({"wall": wall, "cpu": cpu, "peak_rss_mb": me.ru_maxrss / 1024}))
"""


def run(n: int, layout: str, size: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", _RUN, str(n), layout, str(size), str(workers), f"{folder}/out"]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--layout", default="mimic-cxr", choices=("mimic-cxr", "chexpert-plus", "nih"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    small = run(args.n, args.layout, args.image_size, args.workers)
    large = run(4 * args.n, args.layout, args.image_size, args.workers)
    wall_rate = args.n / small["wall"]
    cpu_rate = args.n * args.workers / small["cpu"]
    print(f"{args.n} {args.layout} phantoms at {args.image_size} px with {args.workers} workers")
    print(f"(a) wall: {wall_rate:.1f} images/s   cpu-time rate: {cpu_rate:.1f} images/s   (target >= 50)")
    print(f"    (the cpu-time rate includes interpreter and pool start-up; {small['cpu']:.1f} CPU s in all)")
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    print(
        f"(b) peak RSS of the writer: {small['peak_rss_mb']:.0f} MB for n={args.n}, "
        f"{large['peak_rss_mb']:.0f} MB for n={4 * args.n}: ratio {ratio:.2f}   (target <= 1.1)"
    )


if __name__ == "__main__":
    main()
