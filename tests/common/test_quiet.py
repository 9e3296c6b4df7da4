"""Third-party noise: silenced narrowly (one logger or warning each) and absent from a model-loading run's stderr."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings

from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.quiet import LOG_NOISE, quiet_third_party

NOISE = ("gemm_4bit_forward", "Skipping publisher trust check", "is_gradient_checkpointing", "DegenerateDataWarning",
         "BCa confidence interval")  # fmt: skip


def _passes(logger_name: str, message: str) -> bool:
    logger = logging.getLogger(logger_name)
    record = logger.makeRecord(logger_name, logging.WARNING, __file__, 1, message, (), None)
    return logger.filter(record)


def test_filters_drop_only_their_own_messages():
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per logger
    assert len(logging.getLogger("bitsandbytes.backends.cpu.ops").filters) == 1
    for name, prefix in LOG_NOISE:
        assert not _passes(name, prefix + " from kernels-community: offline")
        assert _passes(name, "CUDA setup failed: libcudart.so not found")  # anything else from the same logger
    message = "the model may not learn to stop. The training loss still looks healthy"
    assert _passes("trl.trainer.sft_trainer", message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        # The silenced FutureWarning only where transformers raises it, any other FutureWarning still shown.
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning,
                               "modeling_utils.py", 1, module="transformers.modeling_utils")  # fmt: skip
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning, "train.py", 1,
                               module="radtune.llava_vqa.train")  # fmt: skip
        warnings.warn("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning, stacklevel=1)
    assert [str(w.message)[:30] for w in caught] == [
        "`is_gradient_checkpointing` is",
        "`torch_dtype` is deprecated! U",
    ]


def test_the_radtune_command_installs_the_filters(tmp_path):
    logging.getLogger("kernels._internals.hf_hub").filters.clear()
    reports = tmp_path / "reports.csv"
    reports.write_text("id,report\n1,No effusion.\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "label", str(reports), "--text-column", "report"])
    assert result.exit_code == 0, result.output
    assert not _passes("kernels._internals.hf_hub", LOG_NOISE[1][1] + " because Hugging Face Hub is offline.")


def test_loading_a_model_prints_no_third_party_noise(tmp_path):
    # An entry point's path: quiet, import peft (which imports bitsandbytes), load a saved model, wrap it in LoRA
    # (peft reads a deprecated transformers property), and a zero-shot AUC interval over six images (resamples
    # without a positive), which scipy's bootstrap turned into NaN with a DegenerateDataWarning.
    script = textwrap.dedent(f"""
        from radtune.common.quiet import quiet_third_party

        quiet_third_party()
        import numpy as np
        import peft
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        from radtune.common.metrics.bootstrap import bootstrap_cis
        from radtune.common.metrics.classification import multilabel_metrics

        config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=2, vocab_size=64)
        LlamaForCausalLM(config).save_pretrained({str(tmp_path / "tiny")!r})
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / "tiny")!r})
        model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        truth = np.array([[1, 0], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], dtype=float)
        scores = np.random.default_rng(1).random((6, 2))
        cis = bootstrap_cis(6, lambda i: multilabel_metrics(truth[i], scores[i], ["a", "b"]).metrics,
                            ["auc/a", "auc/b", "auc_macro"], n_resamples=200)
        print("macro AUC interval", cis["auc_macro"])
    """)  # fmt: skip
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    noisy = [line for line in completed.stderr.splitlines() if any(marker in line for marker in NOISE)]
    assert noisy == []
    assert "macro AUC interval (" in completed.stdout and "nan" not in completed.stdout
