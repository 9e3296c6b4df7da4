"""benchmarks/gpu_train.py at `--scale tiny` on the CPU: the smoke test of the full-size GPU benchmark.

The script runs as a user runs it (`python benchmarks/gpu_train.py …` in a subprocess); the numbers in its JSON are
checked against each other and against what they must be by construction (parts of a step, parameter counts,
the FLOPs formula), and the full-size configs against the published models' parameter counts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_train.py"
# (arch, mode) → the flags of its run; short runs in parallel keep the module under a minute.
RUNS = {
    ("llava-1.5-7b", "lora"): ["--mode", "lora"],
    ("llava-1.5-7b", "qlora"): ["--mode", "qlora"],  # bitsandbytes quantises on the CPU too
    ("llava-next-7b", "lora"): ["--mode", "lora"],
    ("blip-base", "full"): ["--mode", "full"],
    ("vit-gpt2", "lora"): [],  # radtune's default for the captioners
    ("clip-b32", "full"): [],
}


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every run of `RUNS`: `{(arch, mode): (json result, stdout)}`."""
    folder = tmp_path_factory.mktemp("gpu-train")
    processes = {}
    for (arch, mode), flags in RUNS.items():
        out = folder / f"{arch}-{mode}.json"
        command = [sys.executable, str(SCRIPT), "--arch", arch, "--scale", "tiny", "--json", str(out), *flags]
        processes[arch, mode] = (out, subprocess.Popen(command, cwd=REPO, env=_env(), text=True,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    results = {}
    for key, (out, process) in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{key} failed:\n{stderr[-3000:]}"
        results[key] = (json.loads(out.read_text()), stdout)
    return results


@pytest.fixture(scope="module")
def gpu_train():
    """The benchmark script as a module."""
    spec = importlib.util.spec_from_file_location("radtune_benchmark_gpu_train", SCRIPT)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("key", list(RUNS), ids=[f"{arch}-{mode}" for arch, mode in RUNS])
def test_timings_are_positive_and_the_step_split_adds_up(runs, key):
    result, stdout = runs[key]
    assert (result["arch"], result["mode"]) == key
    assert result["device"] == "cpu" and result["dtype"] == "fp32"
    for name in ("pipeline", "model_only"):
        section = result[name]
        assert math.isfinite(section["samples_per_s"]) and section["samples_per_s"] > 0
        assert math.isfinite(section["tokens_per_s"]) and section["tokens_per_s"] > 0
        parts = [section[f"{part}_s"] for part in ("data", "forward", "backward", "optimizer")]
        assert all(part >= 0 for part in parts)
        assert section["forward_s"] > 0 and section["backward_s"] > 0 and section["optimizer_s"] > 0
        assert sum(parts) == pytest.approx(section["step_s"], rel=1e-6)
        assert section["samples_per_s"] == pytest.approx(result["batch_size"] / section["step_s"])
        assert section["mfu"] is None  # no peak FLOP/s for a CPU
        assert section["peak_memory_gib"] is None
    assert result["pipeline_over_model_only"] == pytest.approx(
        result["pipeline"]["step_s"] / result["model_only"]["step_s"]
    )
    assert result["trainable_params_changed"] is True
    assert "pipeline step / model-only step:" in stdout and "samples/s" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("key", list(RUNS), ids=[f"{arch}-{mode}" for arch, mode in RUNS])
def test_parameter_counts_and_the_flops_formula(runs, key):
    result, _ = runs[key]
    groups = result["groups"]
    assert sum(group["params"] for group in groups) == result["params_total"]
    assert sum(group["trainable"] for group in groups) == result["params_trainable"]
    if result["mode"] == "full" and result["arch"] != "llava-1.5-7b":
        assert result["params_trainable"] == result["params_total"]
    else:
        assert 0 < result["params_trainable"] < result["params_total"]
    for group in groups:
        n, trainable = group["params"], group["trainable"]
        expected = 2 * n + (2 * n if trainable else 0) + 2 * trainable
        assert group["flops_per_token"] == expected
        if trainable == n:
            assert group["flops_per_token"] == 6 * n  # full training: the familiar 6N
    tokens = result["pipeline"]["tokens_per_step"]
    flops = sum(group["flops_per_token"] * tokens[group["name"]] for group in groups)
    assert result["pipeline"]["model_flops_per_step"] == pytest.approx(flops)
    assert result["pipeline"]["model_tflops_per_s"] == pytest.approx(flops / result["pipeline"]["step_s"] / 1e12)


@pytest.mark.slow
def test_llava_tokens_include_the_image_tokens(runs):
    result, _ = runs["llava-1.5-7b", "lora"]
    batch, side = result["batch_size"], result["image_size"]
    patches = (side // 14) ** 2  # CLIP ViT-L/14, shrunk to four patches a side
    assert patches == 16
    tokens = result["pipeline"]["tokens_per_step"]
    assert tokens["vision tower"] == batch * (patches + 1)  # with the CLS token
    assert tokens["projector"] == batch * patches
    # each sequence holds its image tokens plus the prompt and the answer
    assert tokens["language model"] > batch * (patches + 5)
    assert result["params_4bit"] == 0
    vision = next(group for group in result["groups"] if group["name"] == "vision tower")
    assert vision["trainable"] == 0  # LoRA on the language model only


@pytest.mark.slow
def test_llava_next_tokens_count_every_tile(runs):
    result, _ = runs["llava-next-7b", "lora"]
    batch, side = result["batch_size"], result["image_size"]
    assert side == 4 * 14 and result["source_image_side"] == 2 * side  # CLIP ViT-L/14, four patches a side
    patches = (side // 14) ** 2
    # llava-v1.6's pinpoints shrunk with the tile side (336 -> 56) include 112x112: the square 112-px image is a
    # 2x2 grid of tiles, plus the whole image
    tiles = 2 * 2 + 1
    tokens = result["pipeline"]["tokens_per_step"]
    assert tokens["vision tower"] == batch * tiles * (patches + 1)  # with the CLS token
    assert tokens["projector"] == batch * tiles * patches
    # in the sequence: the whole image (16), the grid's 8x8 patches and a newline token ending each of its 8 rows
    image_tokens = patches + 8 * 8 + 8
    assert tokens["language model"] > batch * (image_tokens + 5)
    vision = next(group for group in result["groups"] if group["name"] == "vision tower")
    assert vision["trainable"] == 0 and result["params_4bit"] == 0  # LoRA on the language model only


@pytest.mark.slow
def test_qlora_stores_the_language_model_in_4_bits(runs):
    lora, _ = runs["llava-1.5-7b", "lora"]
    qlora, _ = runs["llava-1.5-7b", "qlora"]
    # the same model and adapter: 4-bit weights count as the values they stand for, not as packed bytes
    assert qlora["params_total"] == lora["params_total"]
    assert qlora["params_trainable"] == lora["params_trainable"]
    language = next(group for group in qlora["groups"] if group["name"] == "language model")
    assert 0 < language["params_4bit"] < language["params"]  # linear layers, not embeddings and norms
    assert qlora["double_quant"] is True and lora["double_quant"] is None


@pytest.mark.gpu
def test_on_a_gpu_memory_and_mfu_are_reported(tmp_path):
    out = tmp_path / "result.json"
    command = [sys.executable, str(SCRIPT), "--arch", "llava-1.5-7b", "--mode", "qlora", "--scale", "tiny",
               "--peak-tflops", "100", "--json", str(out)]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["device"] != "cpu" and result["dtype"] == "bf16" and result["params_4bit"] > 0
    for name in ("pipeline", "model_only"):
        section = result[name]
        assert section["peak_memory_gib"] > 0 and section["peak_reserved_gib"] >= section["peak_memory_gib"]
        assert section["mfu"] == pytest.approx(section["model_tflops_per_s"] / 100)


def test_unknown_arch_fails_clearly():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--arch", "llava-9b", "--scale", "tiny"], cwd=REPO,
                               env=_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert completed.returncode == 2
    assert "invalid choice: 'llava-9b'" in completed.stderr and "llava-1.5-7b" in completed.stderr


def test_a_mode_radtune_does_not_train_fails_clearly():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--arch", "clip-b32", "--mode", "qlora", "--scale", "tiny"],
                               cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert completed.returncode == 2
    assert "--mode qlora is not a way radtune trains clip-b32" in completed.stderr


def test_peak_flops_table_matches_device_names(gpu_train):
    assert gpu_train.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_train.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_train.peak_tflops("NVIDIA H200") == gpu_train.peak_tflops("NVIDIA H100 80GB HBM3")
    assert gpu_train.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_train.peak_tflops("NVIDIA L4") == 121.0
    assert gpu_train.peak_tflops("NVIDIA L40S") is None  # not an L4
    assert gpu_train.peak_tflops("NVIDIA GeForce RTX 4090") == 165.2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "published"),
    # the parameter counts the Hub shows for llava-hf/llava-1.5-7b-hf and -13b-hf, llava-hf/llava-v1.6-mistral-7b-hf,
    # nlpconnect/vit-gpt2-image-captioning, openai/clip-vit-base-patch32 and Salesforce/blip-image-captioning-base
    [("llava-1.5-7b", 7.06e9), ("llava-1.5-13b", 13.4e9), ("llava-next-7b", 7.57e9), ("vit-gpt2", 239e6),
     ("clip-b32", 151e6), ("blip-base", 247e6)],
)  # fmt: skip
def test_full_scale_configs_have_the_published_sizes(gpu_train, arch, published):
    import torch
    import transformers

    gpu_train.ensure_radtune_importable()
    tokenizer = gpu_train.make_tokenizer(arch, "full")
    config = gpu_train.model_config(arch, "full", tokenizer)
    model_class = getattr(transformers, gpu_train.MODEL_CLASSES[gpu_train.ARCHS[arch]["family"]])
    with torch.device("meta"):  # shapes only: no memory, no time
        model = model_class(config)
    count = sum(parameter.numel() for parameter in model.parameters())
    if arch == "blip-base":
        # the checkpoint also stores the decoder's output layer, which shares the word embeddings in the model
        count += config.text_config.vocab_size * config.text_config.hidden_size
    assert count == pytest.approx(published, rel=0.005)  # one layer too many or too few is off by 3-8%
    if arch.startswith("llava"):
        assert config.image_seq_length == 576 and config.vision_config.image_size == 336


@pytest.mark.slow
def test_llava_next_is_the_published_config(gpu_train):
    import torch
    import transformers

    fixture = REPO / "tests" / "fixtures" / "llava-next" / "config.json"
    assert fixture.stat().st_size == 1284  # the size the Hub lists for llava-hf/llava-v1.6-mistral-7b-hf's file
    gpu_train.ensure_radtune_importable()
    config = gpu_train.model_config("llava-next-7b", "full", gpu_train.make_tokenizer("llava-next-7b", "full"))
    text, vision = config.text_config, config.vision_config
    # written in the file: Mistral-7B-Instruct-v0.2 with grouped-query attention, CLIP ViT-L/14 at 336 px, five grids
    assert (text.model_type, text.num_key_value_heads, text.intermediate_size, text.vocab_size) == ("mistral", 8, 14336,
                                                                                                   32064)  # fmt: skip
    assert text.rope_parameters["rope_theta"] == 1e6 and text.sliding_window is None
    assert (vision.num_hidden_layers, vision.hidden_size, vision.image_size, vision.patch_size) == (24, 1024, 336, 14)
    assert config.image_grid_pinpoints == [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    assert config.vision_feature_layer == -2 and config.vision_feature_select_strategy == "default"
    # left to Mistral's defaults by the file: 32 layers of 4096 with 32 heads
    assert (text.num_hidden_layers, text.hidden_size, text.num_attention_heads) == (32, 4096, 32)
    with torch.device("meta"):
        model = transformers.LlavaNextForConditionalGeneration(config)
    assert model.model.image_newline.shape == (4096,)  # use_image_newline_parameter
