"""radtune's caption metrics vs pycocoevalcap's own pipeline on the same 5,000 generated caption pairs.

Prints both timings, their ratio (target <= 1.1) and the largest difference between the numbers (must be 0 up
to float noise). Both sides include starting the PTB tokenizer and METEOR JVMs, as a user pays them. Wall time
on a busy machine is dominated by how long METEOR's JVM takes to start, so CPU time (this process plus its
Java children) is printed too: it is the steadier of the two.

    python benchmarks/metrics_speed.py            # 5,000 pairs, 2 alternating rounds
    python benchmarks/metrics_speed.py --n 500 --repeats 1
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import time

WORDS = (
    "no pleural effusion pneumothorax consolidation the heart is enlarged mild moderate cardiomegaly left right "
    "lower upper lobe opacity nodule mass stable chest radiograph lungs are clear of focal atelectasis edema there "
    "a small large with without catheter tube tip in svc 3 cm 5 mm × ≥ – ( ) , ."
).split()


def generate(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) + "."

    def perturbed(text: str) -> str:  # a prediction close to a reference, so every n-gram order scores
        words = text.split()
        for _ in range(rng.randint(0, 4)):
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        return " ".join(words)

    references = [[sentence() for _ in range(rng.randint(1, 3))] for _ in range(n)]
    predictions = [perturbed(rng.choice(refs)) if rng.random() < 0.8 else sentence() for refs in references]
    return predictions, references


def pycocoevalcap_own(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """What COCOEvalCap.evaluate() does, minus SPICE: tokenise gts and res, then each scorer."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    scores = {f"bleu_{k + 1}": bleu[k] for k in range(4)}
    scores["meteor"] = meteor.compute_score(gts, res)[0]
    del meteor
    scores["rouge_l"] = Rouge().compute_score(gts, res)[0]
    scores["cider"] = Cider().compute_score(gts, res)[0]
    return scores


def radtune_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    from radtune.common.metrics.captioning import caption_metrics

    return caption_metrics(predictions, references).metrics


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the JVMs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="number of caption pairs")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the best time of each side counts")
    args = parser.parse_args()
    if shutil.which("java") is None:
        print("Java is not installed (apt-get install default-jre-headless): nothing to compare.")
        return 1
    predictions, references = generate(args.n)
    times = {"pycocoevalcap": [], "radtune": []}
    cpu = {"pycocoevalcap": [], "radtune": []}
    results = {}
    for round_ in range(args.repeats):
        order = [("pycocoevalcap", pycocoevalcap_own), ("radtune", radtune_metrics)]
        for name, function in order if round_ % 2 == 0 else order[::-1]:
            start, start_cpu = time.perf_counter(), cpu_seconds()
            results[name] = function(predictions, references)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    print(f"{args.n} caption pairs, best of {args.repeats} alternating rounds")
    for label, measured in (("wall", times), ("cpu", cpu)):
        theirs, ours = min(measured["pycocoevalcap"]), min(measured["radtune"])
        print(f"{label:4s} pycocoevalcap: {theirs:8.2f} s   {[round(t, 2) for t in measured['pycocoevalcap']]}")
        print(f"{label:4s} radtune:       {ours:8.2f} s   {[round(t, 2) for t in measured['radtune']]}")
        print(f"{label:4s} ratio radtune / pycocoevalcap: {ours / theirs:.3f} (target <= 1.1)")
    worst = 0.0
    for metric, value in results["pycocoevalcap"].items():
        diff = abs(results["radtune"][metric] - value)
        worst = max(worst, diff)
        print(f"  {metric:8s} pycocoevalcap {value:.6f}  radtune {results['radtune'][metric]:.6f}  |diff| {diff:.1e}")
    print(f"largest |difference|: {worst:.1e}")
    return 0 if worst < 1e-6 else 2


if __name__ == "__main__":
    sys.exit(main())
