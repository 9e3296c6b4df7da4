"""`--load-in-4bit` on an adapter trained without 4-bit that also trained the projector (`modules_to_save`).

peft saved the projector's weights unquantised; quantising the base's projector made peft look for the weights'
`absmax` (`KeyError ... absmax`). `radtune.llava_vqa.inference.load_vqa_model` keeps the adapter's saved modules
out of the quantisation. Loading is checked here; 4-bit generation itself does not run on bitsandbytes' CPU path
with the tiny model's hidden size (< 64).
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow]


def test_4bit_load_keeps_the_trained_projector_unquantised(tiny_model, tmp_path):
    import torch
    from bitsandbytes.nn import Linear4bit
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from radtune.llava_vqa.inference import load_vqa_model

    base = tiny_model("llava")
    adapter = tmp_path / "adapter"
    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(base),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["multi_modal_projector"],
                   task_type="CAUSAL_LM"),
    )  # fmt: skip
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "modules_to_save" in name:
                parameter.add_(0.5)  # the projector was trained
    model.save_pretrained(adapter)
    AutoProcessor.from_pretrained(base).save_pretrained(adapter)
    info = {"task": "vqa", "base_model": str(base), "dtype": "float32", "quantization": None, "use_peft": True}
    (adapter / "run_info.json").write_text(json.dumps(info))

    loaded, _ = load_vqa_model(adapter, load_in_4bit=True, device="cpu")

    projector = loaded.base_model.model.model.multi_modal_projector.modules_to_save["default"]
    assert type(projector.linear_1) is torch.nn.Linear and type(projector.linear_2) is torch.nn.Linear
    saved = load_file(adapter / "adapter_model.safetensors")
    (key,) = [key for key in saved if key.endswith("multi_modal_projector.linear_1.weight")]
    assert torch.equal(projector.linear_1.weight.float(), saved[key].float()), "the trained projector, not the base's"
    language_layer = loaded.base_model.model.model.language_model.layers[0].mlp.up_proj
    assert isinstance(language_layer, Linear4bit), "the rest of the model is quantised"
