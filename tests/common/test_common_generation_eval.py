"""The streamed generation evaluation: bounded rows, batches, process shares and metric names."""

from __future__ import annotations

import pytest

from radtune.common.generation_eval import GenerationEval, metric_names, run_generation_eval, shard_indices


@pytest.mark.parametrize("n,processes", [(0, 2), (1, 2), (5, 2), (6, 3), (7, 4), (64, 8)])
def test_process_shares_cover_every_row_once_with_equal_generate_calls(n, processes):
    shares = [shard_indices(n, processes, rank) for rank in range(processes)]
    assert len({len(indices) for indices, _ in shares}) == 1  # the same number of rows (and calls) everywhere
    kept = [index for indices, n_real in shares for index in indices[:n_real]]
    assert kept == list(range(n))  # in row order, each row once


def test_generates_the_first_rows_in_batches_and_scores_only_the_records():
    from datasets import Dataset

    rows = Dataset.from_dict({"text": [f"row {i}" for i in range(10)]})
    calls = []

    def generate(model, batch):
        calls.append(list(batch["text"]))
        return [text.upper() for text in batch["text"]]

    def score(records):
        return {"family/n": len(records), "first": records[0], "exact": sum(r == "ROW 0" for r in records) / 7}

    metrics = run_generation_eval(None, GenerationEval(rows, generate, score, max_samples=7, batch_size=3),
                                  progress=False)  # fmt: skip
    assert [len(batch) for batch in calls] == [3, 3, 1] and calls[0][0] == "row 0" and calls[-1] == ["row 6"]
    assert metrics["family/n"] == 7 and metrics["first"] == "ROW 0"
    # Trainer naming: prefixed, `/` → `_`, non-numeric values left out.
    assert metric_names(metrics, "eval") == {"eval_family_n": 7.0, "eval_exact": 1 / 7}


def test_a_generate_that_loses_rows_is_an_error():
    from datasets import Dataset

    spec = GenerationEval(Dataset.from_dict({"x": [1, 2]}), lambda model, rows: ["one"], lambda records: {})
    with pytest.raises(ValueError, match="1 records for 2 rows"):
        run_generation_eval(None, spec, progress=False)
    with pytest.raises(ValueError, match="max_samples"):
        GenerationEval([], spec.generate, spec.score, max_samples=-1)
