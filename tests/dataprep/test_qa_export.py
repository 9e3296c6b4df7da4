"""The QA export: TRL's conversational formats, split-preserving, and trainable by SFTTrainer as saved."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from qa_fake_openai import make_report_dataset

from radtune.dataprep.qa_cli import qa


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_report_dataset(tmp_path_factory.mktemp("qa-source") / "data", n=4)


def _export(source, out, *extra):
    # Balancing drops pairs across the split; these tests count pairs per report, so they turn it off.
    result = CliRunner().invoke(qa, [str(source), str(out), "--generator", "rules", "--n-per-report", "3", "--no-balance", *extra])
    assert result.exit_code == 0, result.output
    from datasets import load_from_disk

    return load_from_disk(str(out))


def test_single_turn_messages_keep_splits_ids_and_answer_types(source, tmp_path):
    data = _export(source, tmp_path / "out")
    assert set(data) == {"train", "test"}
    assert len(data["train"]) == 4 * 3  # three pairs per report, one per row
    row = data["train"][0]
    assert row["messages"][0]["role"] == "user"
    assert [part["type"] for part in row["messages"][0]["content"]] == ["image", "text"]
    assert row["messages"][0]["content"][1]["text"] == row["question"]
    assert row["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]}
    assert len(row["images"]) == 1 and row["images"][0].size == (32, 32)
    assert row["answer_type"] in ("closed", "open") and row["qa_id"] == f"{row['id']}-0"
    assert {"study_id", "patient_id", "source", "license"} <= set(data["train"].column_names)
    # Patient-level splits are the source's: no patient crosses them.
    assert not set(data["train"]["patient_id"]) & set(data["test"]["patient_id"])
    card = (tmp_path / "out" / "README.md").read_text()
    assert "visual-question-answering" in card and "license: cc0-1.0" in card
    report = json.loads((tmp_path / "out" / "qa_report.json").read_text())
    assert report["rows"] == {"train": 12, "test": 12} and report["failures"] == []

    # Rerunning into the same folder needs --overwrite.
    result = CliRunner().invoke(qa, [str(source), str(tmp_path / "out"), "--generator", "rules"])
    assert result.exit_code != 0 and "--overwrite" in result.output


def test_the_pipeline_function_writes_what_the_command_writes(source, tmp_path):
    from datasets import load_from_disk

    from radtune.dataprep.qa.pipeline import QAPipelineError, generate_qa_dataset

    by_command = _export(source, tmp_path / "command")
    report = generate_qa_dataset(source, tmp_path / "library", generator="rules", n_per_report=3, balance=False)
    assert report == json.loads((tmp_path / "library" / "qa_report.json").read_text())
    written = json.loads((tmp_path / "command" / "qa_report.json").read_text())
    assert {k: v for k, v in report.items() if k != "command"} == {k: v for k, v in written.items() if k != "command"}
    by_library = load_from_disk(str(tmp_path / "library"))
    for split in by_command:
        assert by_library[split]["messages"] == by_command[split]["messages"]

    with pytest.raises(QAPipelineError, match="already holds a QA dataset"):
        generate_qa_dataset(source, tmp_path / "library", generator="rules")
    with pytest.raises(QAPipelineError, match=r"split\(s\) nope not in .*; it has: train, test"):
        generate_qa_dataset(source, tmp_path / "other", generator="rules", splits=["nope"])


def test_multi_turn_and_prompt_completion_forms(source, tmp_path):
    multi = _export(source, tmp_path / "multi", "--conversation", "multi")["train"]
    assert len(multi) == 4
    turns = multi[0]["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant"] * 3
    assert [part["type"] for part in turns[0]["content"]] == ["image", "text"]
    assert [part["type"] for part in turns[2]["content"]] == ["text"]  # the image only once
    assert multi[0]["question"] == [turns[i]["content"][-1]["text"] for i in (0, 2, 4)]

    pc = _export(source, tmp_path / "pc", "--format", "prompt-completion", "--split", "train")
    assert set(pc) == {"train"}
    row = pc["train"][0]
    assert [turn["role"] for turn in row["prompt"]] == ["user"] and [t["role"] for t in row["completion"]] == [
        "assistant"
    ]
    assert row["completion"][0]["content"][0]["text"] == row["answer"]


def _train(folder, dataset, **config):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    model = LlavaForConditionalGeneration.from_pretrained(folder)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(folder) + "-out",
            activation_checkpointing=False,  # TRL's default goes through a deprecated alias
            max_length=None,
            max_steps=2,
            use_cpu=True,
            report_to=[],
            per_device_train_batch_size=2,
            learning_rate=1e-3,
            dataloader_num_workers=0,
            save_strategy="no",
            **config,
        ),  # fmt: skip
        train_dataset=dataset,
        processing_class=AutoProcessor.from_pretrained(folder),
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    changed = [name for name, p in model.named_parameters() if p.requires_grad and not torch.equal(before[name], p)]
    assert changed
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, config",
    [
        ((), {"assistant_only_loss": True}),
        (("--conversation", "multi"), {"assistant_only_loss": True}),
        (("--format", "prompt-completion"), {}),
    ],
)
def test_exported_dataset_trains_with_sft_trainer_on_tiny_llava_as_saved(source, tmp_path, tiny_model, extra, config):
    data = _export(source, tmp_path / "out", *extra)
    _train(tiny_model("llava"), data["train"], **config)


_PUSH_SCRIPT = """
import json, sys
from radtune.dataprep.qa_cli import qa
qa(sys.argv[1:4] + ["--generator", "rules", "--n-per-report", "2", "--no-balance", "--push-to-hub", sys.argv[4]], standalone_mode=False)
from datasets import load_dataset
from huggingface_hub import HfApi
loaded = load_dataset(sys.argv[4])
info = HfApi().repo_info(sys.argv[4], repo_type="dataset")
print(json.dumps({"rows": {k: len(v) for k, v in loaded.items()}, "private": info.private,
                  "columns": loaded["train"].column_names, "n_images": len(loaded["train"][0]["images"])}))
"""


@pytest.mark.slow
def test_push_to_hub_is_private_and_loads_back(source, tmp_path, hub_server):
    import os
    import subprocess
    import sys

    repo = "radtune-tester/qa-pairs"
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home"), "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PUSH_SCRIPT, str(source), str(tmp_path / "out"), "--overwrite", repo],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    pushed = json.loads(result.stdout.strip().splitlines()[-1])
    assert pushed["rows"] == {"train": 8, "test": 8}
    assert pushed["private"] is True
    assert {"messages", "images", "question", "answer", "answer_type"} <= set(pushed["columns"])
    assert pushed["n_images"] == 1


def test_a_split_without_pairs_is_left_out_and_named_so_the_folder_loads(source, tmp_path, monkeypatch):
    """datasets 5.2 saves a 0-row split without a data file and `load_from_disk` then fails (IndexError): seen with
    the CheXpert Plus recipe, whose balanced rules QA left the small validation split empty."""
    from datasets import load_from_disk

    from radtune.dataprep.qa import rules_generator

    real = rules_generator.generate_rules_qa
    test_texts = set(load_from_disk(str(source))["test"]["text"])

    def none_for_the_test_split(text, *args, **kwargs):
        return [] if text in test_texts else real(text, *args, **kwargs)

    monkeypatch.setattr(rules_generator, "generate_rules_qa", none_for_the_test_split)
    data = _export(source, tmp_path / "out")
    assert set(data) == {"train"} and len(data["train"]) == 4 * 3
    report = json.loads((tmp_path / "out" / "qa_report.json").read_text())
    assert report["rows"] == {"train": 12} and report["empty_splits"] == ["test"]
    assert "Left out: `test`" in (tmp_path / "out" / "README.md").read_text()
