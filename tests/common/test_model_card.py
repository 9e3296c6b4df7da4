"""Model card generation, without any server: YAML fields, model-index from metrics.json, what is left out."""

from __future__ import annotations

import json

import pytest
import yaml

from radtune.common.model_card import build_model_card, model_index_results, read_metrics

METRICS = {
    "metrics": {"bleu_1": 0.3125, "rouge_l": 0.25},
    "ci": {"bleu_1": [0.29, 0.33]},
    "meta": {"task": "captioning", "model": "tiny", "dataset": "eltorio/ROCOv2-radiology", "split": "test", "n": 8},
}


def card_yaml(card) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture
def adapter_dir(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "llava-hf/llava-1.5-7b-hf", "peft_type": "LORA"})
    )
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    return folder


def test_adapter_card_yaml(adapter_dir):
    data = card_yaml(build_model_card(adapter_dir, "me/llava-roco-lora", license="apache-2.0", tags=["vqa"]))
    assert data["base_model"] == "llava-hf/llava-1.5-7b-hf"
    assert data["library_name"] == "peft"
    assert data["license"] == "apache-2.0"
    assert data["datasets"] == ["eltorio/ROCOv2-radiology"]
    assert data["tags"] == ["medical", "radiology", "lora", "peft", "vqa"]
    (model,) = data["model-index"]
    assert model["name"] == "llava-roco-lora"
    (result,) = model["results"]
    assert result["task"] == {"type": "image-to-text", "name": "captioning"}
    assert result["dataset"] == {
        "name": "eltorio/ROCOv2-radiology",
        "type": "eltorio/ROCOv2-radiology",
        "split": "test",
    }
    assert result["metrics"] == [
        {"type": "bleu_1", "value": 0.3125, "name": "bleu_1"},
        {"type": "rouge_l", "value": 0.25, "name": "rouge_l"},
    ]


def test_card_text_shows_results_with_confidence_intervals(adapter_dir):
    text = build_model_card(adapter_dir, "me/llava-roco-lora").text
    assert "| bleu_1 | 0.3125 | 0.2900 – 0.3300 |" in text
    assert "| rouge_l | 0.2500 |  |" in text
    assert 'PeftModel.from_pretrained(base, "me/llava-roco-lora")' in text


def test_model_card_without_metrics_or_hub_base(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "_name_or_path": str(tmp_path)}))
    data = card_yaml(build_model_card(tmp_path, "me/tiny-clip"))
    assert data["library_name"] == "transformers"
    assert data["license"] == "other"
    assert data["tags"] == ["medical", "radiology"]
    assert "base_model" not in data, "a local path is not a Hub id"
    assert "model-index" not in data and "datasets" not in data


def test_explicit_base_model_and_datasets_win(adapter_dir):
    data = card_yaml(build_model_card(adapter_dir, "me/x", base_model="org/other-base", datasets=["me/slake-radtune"]))
    assert data["base_model"] == "org/other-base"
    assert data["datasets"] == ["me/slake-radtune"]
    assert data["model-index"][0]["results"][0]["dataset"]["name"] == "eltorio/ROCOv2-radiology"


def test_dataset_that_is_not_a_hub_id_stays_out_of_datasets(tmp_path):
    metrics = {"metrics": {"auc": 0.9}, "meta": {"task": "zero-shot", "dataset": "CheXpert validation"}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    data = card_yaml(build_model_card(tmp_path, "me/clip"))
    assert "datasets" not in data
    (result,) = data["model-index"][0]["results"]
    assert result["task"]["type"] == "zero-shot-image-classification"
    assert result["dataset"] == {"name": "CheXpert validation", "type": "custom"}
    (evaluation,) = model_index_results(metrics)
    assert evaluation.metric_value == 0.9


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "JSON object"),
        ('{"metrics": {}}', "non-empty"),
        ('{"metrics": {"bleu": "high"}}', 'metric "bleu" must be a number'),
        ('{"metrics": {"bleu": 0.1}, "meta": []}', '"ci" and "meta"'),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_metrics_json_is_refused(tmp_path, content, message):
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_metrics(tmp_path)
