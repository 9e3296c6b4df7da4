"""Corpus-level captioning metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, as pycocoevalcap computes them.

The numbers are pycocoevalcap's own: the texts go through the same Stanford PTB tokenizer jar with the same
flags (`-preserveLines -lowerCase`) and the same punctuation filter, then through pycocoevalcap's `Bleu(4)`,
`Meteor`, `Rouge` and `Cider` scorers called directly (pycocoevalcap's `Cider` is CIDEr-D: clipped counts and a
Gaussian length penalty, sigma 6). `COCOEvalCap.evaluate()` is not used because it always runs SPICE, which
downloads Stanford CoreNLP models at start-up and so cannot run offline: SPICE is listed in
`CaptionMetrics.unavailable` with that reason instead of being dropped silently.

Two differences from calling `PTBTokenizer().tokenize` yourself, neither of which changes a number:
- the temporary file goes to the system temp folder, not into pycocoevalcap's package folder (which may be
  read-only);
- carriage returns and other characters the Java tokenizer treats as line breaks are replaced by spaces like
  newlines are. pycocoevalcap only replaces `\\n`, so a caption holding `\\r` shifts every later caption onto
  the wrong image there; here such an input is scored as one line.

Java: the PTB tokenizer and METEOR are Java programs. Without a `java` executable radtune warns once, skips
METEOR, and scores BLEU, ROUGE-L and CIDEr-D on texts split by a regular expression; the result then says
`tokenizer="fallback-regex"` and its numbers are NOT comparable with published ones. Install Java with
`apt-get install default-jre-headless` (Debian/Ubuntu) to get the real numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
JAVA_FREE_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")

PTB_TOKENIZER = "ptb"
FALLBACK_TOKENIZER = "fallback-regex"

SPICE_UNAVAILABLE = "SPICE downloads Stanford CoreNLP models when it starts, so it cannot run offline"
METEOR_UNAVAILABLE = "METEOR needs Java (apt-get install default-jre-headless)"
NO_JAVA_WARNING = (
    "Java was not found: METEOR and the PTB tokenizer cannot run. Reporting BLEU, ROUGE-L and CIDEr-D on a "
    "fallback regex tokenizer (tokenizer='fallback-regex'); these numbers are not comparable with published "
    "ones. Install Java (Debian/Ubuntu: apt-get install default-jre-headless) for the real metrics."
)

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS: tokens dropped after PTB tokenisation.
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
# Characters the Java tokenizer (with -preserveLines) treats as line ends, besides "\n".
_LINE_BREAKS = re.compile("[\r\x0b\x0c\x85\u2028\u2029]")
_FALLBACK_TOKEN = re.compile(r"\w+(?:[.,/']\w+)*|[^\w\s]")

_warned_no_java = False


@dataclass
class CaptionMetrics:
    """What `caption_metrics` returns.

    Attributes:
        metrics (`dict[str, float]`): corpus-level scores named as in `CAPTION_METRICS` (0..1; CIDEr-D 0..10).
        unavailable (`dict[str, str]`): metrics that could not be computed here, with the reason.
        tokenizer (`str`): `"ptb"` (pycocoevalcap's, comparable with papers) or `"fallback-regex"`.
        n (`int`): number of scored items.
    """

    metrics: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    tokenizer: str = PTB_TOKENIZER
    n: int = 0


def java_available() -> bool:
    """Whether a `java` executable is on the PATH (needed for the PTB tokenizer and METEOR)."""
    return shutil.which("java") is not None


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap

    # pycocoevalcap is a namespace-less package without __init__.py: take its folder from __path__.
    return Path(next(iter(pycocoevalcap.__path__)))


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenise `texts` exactly as pycocoevalcap's `PTBTokenizer` does (one JVM start for all of them).

    Lower-cased PTB tokens joined by single spaces, with pycocoevalcap's punctuation tokens removed.
    """
    if not texts:
        return []
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    lines = [_LINE_BREAKS.sub(" ", text.replace("\n", " ")) for text in texts]
    handle, path = tempfile.mkstemp(prefix="radtune-ptb-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write("\n".join(lines).encode())
        completed = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", path],
            capture_output=True,
            check=False,
        )
    finally:
        os.remove(path)
    if completed.returncode != 0:
        raise RuntimeError(f"the PTB tokenizer failed: {completed.stderr.decode(errors='replace').strip()}")
    out = completed.stdout.decode().split("\n")
    if len(out) < len(lines):
        raise RuntimeError(f"the PTB tokenizer returned {len(out)} lines for {len(lines)} texts")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATIONS) for line in out[: len(lines)]]


def fallback_tokenize(texts: Sequence[str]) -> list[str]:
    """A Java-free stand-in for the PTB tokenizer: lower-case word and punctuation runs, punctuation dropped."""
    tokenized = []
    for text in texts:
        tokens = _FALLBACK_TOKEN.findall(text.lower())
        tokenized.append(" ".join(t for t in tokens if t not in PTB_PUNCTUATIONS))
    return tokenized


def _check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences, not a single string")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} reference lists")
    refs = []
    for i, (prediction, item_refs) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(prediction, str):
            raise TypeError(f"item {i}: the prediction must be a string, got {type(prediction).__name__}")
        if isinstance(item_refs, str):
            item_refs = [item_refs]
        item_refs = list(item_refs)
        if not item_refs or not all(isinstance(r, str) for r in item_refs):
            raise ValueError(f"item {i}: references must be a non-empty list of strings")
        refs.append(item_refs)
    return refs


def _warn_no_java() -> None:
    global _warned_no_java
    if not _warned_no_java:
        warnings.warn(NO_JAVA_WARNING, RuntimeWarning, stacklevel=3)
        _warned_no_java = True


class CaptionScorer:
    """Scores caption sets with one long-lived METEOR process (its JVM takes 10-30 s to start).

    `caption_metrics` starts and stops METEOR on every call; keep a `CaptionScorer` when scoring many
    times (each evaluation during training, several checkpoints):

        with CaptionScorer() as scorer:
            for checkpoint in checkpoints:
                print(scorer.compute(predict(checkpoint), references).metrics)

    Args:
        tokenizer (`str`, *optional*, defaults to `"auto"`): `"ptb"` (needs Java), `"fallback-regex"`, or
            `"auto"` (PTB when Java is found, else the fallback with a one-time warning).
        meteor (`bool`, *optional*, defaults to `True`): compute METEOR when Java is found.
    """

    def __init__(self, *, tokenizer: str = "auto", meteor: bool = True) -> None:
        if tokenizer not in ("auto", PTB_TOKENIZER, FALLBACK_TOKENIZER):
            raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'fallback-regex', got {tokenizer!r}")
        self.has_java = java_available()
        if tokenizer == PTB_TOKENIZER and not self.has_java:
            raise RuntimeError("The PTB tokenizer needs Java (apt-get install default-jre-headless)")
        if tokenizer == "auto":
            if not self.has_java:
                _warn_no_java()
            tokenizer = PTB_TOKENIZER if self.has_java else FALLBACK_TOKENIZER
        self.tokenizer = tokenizer
        self.meteor = meteor
        self._meteor = None

    def compute(self, predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> CaptionMetrics:
        """Corpus-level scores of `predictions` against `references` (see `caption_metrics`)."""
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        gts, res = self.tokenized(predictions, references)
        n = len(res)
        unavailable = {"spice": SPICE_UNAVAILABLE}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        metrics = {f"bleu_{k + 1}": float(bleu[k]) for k in range(4)}
        if self.meteor and self.has_java:
            if self._meteor is None:
                self._meteor = start_meteor()
            # The jar's corpus aggregate, not the mean of item scores.
            metrics["meteor"] = float(self._meteor.compute_score(gts, res)[0])
        else:
            unavailable["meteor"] = METEOR_UNAVAILABLE if not self.has_java else "not requested (meteor=False)"
        metrics["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        metrics["cider"] = float(Cider().compute_score(gts, res)[0])
        ordered = {name: metrics[name] for name in CAPTION_METRICS if name in metrics}
        return CaptionMetrics(metrics=ordered, unavailable=unavailable, tokenizer=self.tokenizer, n=n)

    def tokenized(self, predictions, references) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        """pycocoevalcap's `(gts, res)` of the items, tokenised in one call (one JVM start)."""
        refs = _check_inputs(predictions, references)
        n = len(refs)
        if n == 0:
            raise ValueError("no items to score")
        flat = list(predictions) + [r for item_refs in refs for r in item_refs]
        tokens = ptb_tokenize(flat) if self.tokenizer == PTB_TOKENIZER else fallback_tokenize(flat)
        res = {i: [tokens[i]] for i in range(n)}
        gts, cursor = {}, n
        for i, item_refs in enumerate(refs):
            gts[i] = tokens[cursor : cursor + len(item_refs)]
            cursor += len(item_refs)
        return gts, res

    def item_scores(
        self, predictions: Sequence[str], references: Sequence[Sequence[str] | str]
    ) -> dict[str, list[float]]:
        """Per-item scores, for paired comparisons and subgroups (see `caption_item_scores`)."""
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        gts, res = self.tokenized(predictions, references)
        _, bleu = Bleu(4).compute_score(gts, res, verbose=0)
        _, rouge = Rouge().compute_score(gts, res)
        _, cider = Cider().compute_score(gts, res)
        return {
            "cider": [float(v) for v in cider],
            "rouge_l": [float(v) for v in rouge],
            "sentence_bleu_4": [float(v) for v in bleu[3]],
        }

    def close(self) -> None:
        """Stop the METEOR process (if one was started)."""
        if self._meteor is not None:
            process, self._meteor = self._meteor.meteor_p, None
            process.stdin.close()
            process.kill()
            process.wait()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def start_meteor():
    """A pycocoevalcap `Meteor` scorer (starts its JVM)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str] | str],
    *,
    tokenizer: str = "auto",
    meteor: bool = True,
) -> CaptionMetrics:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, equal to pycocoevalcap's on the same inputs.

    Starts (and stops) one JVM for the PTB tokenizer and one for METEOR; use `CaptionScorer` to keep METEOR
    running across calls.

    Args:
        predictions (`Sequence[str]`): one generated caption per item (may be empty).
        references (`Sequence[Sequence[str]]`): one or more reference captions per item (a bare string counts
            as one reference).
        tokenizer (`str`, *optional*, defaults to `"auto"`): `"ptb"` (needs Java), `"fallback-regex"`, or
            `"auto"` (PTB when Java is found, else the fallback with a one-time warning).
        meteor (`bool`, *optional*, defaults to `True`): compute METEOR when Java is found.

    Returns:
        `CaptionMetrics`: `.metrics` maps `bleu_1 … bleu_4, meteor, rouge_l, cider` to floats; metrics that
        could not run are in `.unavailable` (SPICE always, METEOR without Java) and `.tokenizer` says which
        tokenizer produced the numbers.

    Example:
        >>> caption_metrics(["no pleural effusion"], [["no pleural effusion .", "no effusion"]]).metrics["bleu_1"]
    """
    with CaptionScorer(tokenizer=tokenizer, meteor=meteor) as scorer:
        return scorer.compute(predictions, references)


def caption_item_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str] | str], *, tokenizer: str = "auto"
) -> tuple[dict[str, list[float]], str]:
    """Per-item CIDEr-D, ROUGE-L and sentence BLEU-4, from pycocoevalcap's scorers on the same tokens.

    - `cider`: each item's CIDEr-D, with document frequencies from the references of all the items (the pooled
      corpus), so their mean is the corpus CIDEr-D of `caption_metrics`;
    - `rouge_l`: each item's ROUGE-L; their mean is the corpus ROUGE-L;
    - `sentence_bleu_4`: each item's BLEU-4 as pycocoevalcap scores a single sentence (its own brevity penalty).
      Their mean is NOT the corpus BLEU-4, which pools n-gram counts over all items first.
    METEOR is left out: its corpus score is the jar's aggregate, not a mean of item scores.

    Returns:
        `(scores, tokenizer)`: `{name: [score per item]}` and the tokenizer used (`"ptb"` or `"fallback-regex"`).
    """
    with CaptionScorer(tokenizer=tokenizer, meteor=False) as scorer:
        return scorer.item_scores(predictions, references), scorer.tokenizer
