"""The usage snippet of every model card radtune writes runs, against repos on the local Hub (`tests/hub_server.py`).

For each kind of model radtune publishes — a LLaVA LoRA adapter, a merged LLaVA, a ViT-GPT2 LoRA adapter, a BLIP
captioner, a BLIP VQA model, a CLIP and a dual encoder — a tiny model folder is pushed with radtune's own push
(`radtune.common.hub.push_folder`, which writes the card), its base model is put on the local Hub under the real
base's repo id, the card's Python block is taken from the pushed `README.md` and executed as a user would (in a
folder holding `image.png`), and what it returns is compared with radtune's own inference on the same repo.

The Hub round-trips run in one subprocess (this file, run as a script): huggingface_hub reads the endpoint at import.

    python tests/common/test_card_snippets.py REPORT.json WORK_DIR TINY_MODELS.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# case → (tiny model kind, the Hub repo id of its base model: where the snippet loads the base from)
CASES = {
    "llava-adapter": ("llava", "llava-hf/llava-1.5-7b-hf"),
    "llava-merged": ("llava", "llava-hf/llava-1.5-7b-hf"),
    "vit-gpt2-lora": ("vit-gpt2", "nlpconnect/vit-gpt2-image-captioning"),
    "blip-caption": ("blip-caption", "Salesforce/blip-image-captioning-base"),
    "blip-vqa": ("blip-vqa", "Salesforce/blip-vqa-base"),
    "clip": ("clip", "openai/clip-vit-base-patch32"),
    "dual-encoder": ("dual-encoder", None),
}
ADAPTERS = {"llava-adapter", "vit-gpt2-lora"}
# The towers a real dual encoder names (radtune.contrastive.dual_encoder's defaults).
TOWERS = ("dmis-lab/biobert-v1.1", "microsoft/resnet-50")
QUESTION = "Is there a pleural effusion?"  # the question the VQA snippets ask


# ----------------------------------------------------------------------------------------------------------------
# The subprocess: push, read the card back, run its snippet, run radtune's inference on the same repo.


def _python_block(card: str) -> str:
    start = card.index("```python\n") + len("```python\n")
    return card[start : card.index("```", start)]


def _lora(model, target_modules, folder: Path, base_repo: str, task_type: str | None = None) -> None:
    """Save a LoRA adapter of `model` whose B matrices are not zero (so the adapter changes the output) and whose
    `adapter_config.json` names `base_repo`, as an adapter trained from that Hub model does."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, task_type=task_type)
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    peft_model.peft_config["default"].base_model_name_or_path = base_repo
    peft_model.save_pretrained(folder)


def _build_case(case: str, tiny: Path, folder: Path) -> str | None:
    """Write the folder radtune would publish for `case`; returns the `base_model` its push names (or `None`)."""
    import shutil

    kind, base_repo = CASES[case]
    if case == "llava-adapter":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        _lora(AutoModelForImageTextToText.from_pretrained(tiny), ["q_proj", "v_proj"], folder, base_repo, "CAUSAL_LM")
        AutoProcessor.from_pretrained(tiny).save_pretrained(folder)  # training saves the processor beside it
        (folder / "run_info.json").write_text(json.dumps({"task": "vqa", "base_model": base_repo, "dtype": "float32"}))
        return base_repo
    if case == "vit-gpt2-lora":
        from transformers import AutoImageProcessor, AutoTokenizer, GenerationConfig, VisionEncoderDecoderModel

        _lora(VisionEncoderDecoderModel.from_pretrained(tiny), r"decoder\.transformer\.h\.\d+\.attn\.c_attn", folder,
              base_repo)  # fmt: skip
        AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
        AutoImageProcessor.from_pretrained(tiny).save_pretrained(folder)
        GenerationConfig.from_pretrained(tiny).save_pretrained(folder)
        info = {"task": "captioning", "architecture": "vit-gpt2", "base_model": base_repo, "use_peft": True}
        (folder / "run_info.json").write_text(json.dumps(info))
        return base_repo
    shutil.copytree(tiny, folder)
    if case == "dual-encoder":
        config_path = folder / "dual_encoder_config.json"
        config = json.loads(config_path.read_text())
        config["text_model"], config["image_model"] = TOWERS
        config_path.write_text(json.dumps(config, indent=2))
    return base_repo


def _run_snippet(code: str, workdir: Path) -> tuple[dict, str]:
    """Execute a card's snippet in `workdir` (which holds `image.png`); returns its namespace and what it printed."""
    import contextlib
    import io

    namespace: dict = {"__name__": "__card__"}
    printed = io.StringIO()
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "<model card>", "exec"), namespace)  # noqa: S102 - the test runs what users run
    finally:
        os.chdir(cwd)
    return namespace, printed.getvalue()


def _check_case(case: str, namespace: dict, printed: str, repo_id: str, image) -> dict:
    """What the snippet produced, and radtune's own inference on the same repo for comparison."""
    import torch

    result: dict = {"printed": printed.strip(), "model_class": type(namespace["model"]).__name__}
    if case.startswith("llava"):
        from radtune.llava_vqa.inference import generate_answers, inference_prompt, load_vqa_model

        tokenizer = namespace["processor"].tokenizer
        ids = namespace["inputs"]["input_ids"][0].tolist()
        model, processor = load_vqa_model(repo_id, device="cpu")
        radtune_ids = processor(images=image, text=inference_prompt(processor, QUESTION))["input_ids"][0]
        base = namespace["model"].get_base_model() if hasattr(namespace["model"], "get_base_model") else None
        result.update(
            answer=namespace["answer"],
            input_ids=ids,
            bos_count=ids.count(tokenizer.bos_token_id),
            starts_with_bos=ids[0] == tokenizer.bos_token_id,
            radtune_input_ids=[int(i) for i in radtune_ids],
            radtune_answer=generate_answers(model, processor, [image], [QUESTION], max_new_tokens=32, progress=False)[
                0
            ],
            base_class=type(base).__name__ if base is not None else None,
            has_generate=callable(getattr(namespace["model"], "generate", None)),
        )
    elif case in ("vit-gpt2-lora", "blip-caption", "blip-vqa"):
        from radtune.captioning.modeling import load_captioner

        captioner = load_captioner(repo_id, device="cpu")
        if case == "blip-vqa":
            expected = captioner.generate([image], [QUESTION], max_new_tokens=16, num_beams=1)[0]
            result.update(text=namespace["answer"], radtune_text=expected)
        else:
            expected = captioner.generate([image], max_new_tokens=64, num_beams=1)[0]
            result.update(text=namespace["caption"], radtune_text=expected)
    else:
        from radtune.contrastive.modeling import encode_images, encode_texts, load_contrastive

        model, processor = load_contrastive(repo_id)
        model.eval()
        texts = ["pleural effusion", "no acute cardiopulmonary process"]
        with torch.no_grad():
            pixel_values = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
            encoded = processor.tokenizer(texts, padding=True, return_tensors="pt")
            image_ref = encode_images(model, pixel_values)[0]
            text_ref = encode_texts(model, encoded["input_ids"], encoded["attention_mask"])
        image_embedding = torch.nn.functional.normalize(namespace["image_embedding"].float(), dim=-1)
        text_embeddings = torch.nn.functional.normalize(namespace["text_embeddings"].float(), dim=-1)
        result.update(
            image_shape=list(namespace["image_embedding"].shape),
            text_shape=list(namespace["text_embeddings"].shape),
            image_cosine=float(image_embedding @ image_ref),
            text_cosines=[float(a @ b) for a, b in zip(text_embeddings, text_ref, strict=True)],
        )
    return result


def _main(report_path: Path, work: Path, tiny_models: dict[str, str]) -> None:
    import time
    import traceback

    from huggingface_hub import HfApi, hf_hub_download
    from PIL import Image

    from radtune.common.hub import push_folder

    user = HfApi().whoami()["name"]
    image = Image.new("RGB", (40, 40), (70, 70, 70))
    image.paste((230, 230, 230), (10, 10, 30, 30))
    (work / "user").mkdir(parents=True, exist_ok=True)
    image.save(work / "user" / "image.png")
    image = Image.open(work / "user" / "image.png").convert("RGB")

    pushed_bases = set()
    report: dict = {}
    for case, (kind, base_repo) in CASES.items():
        started = time.perf_counter()
        try:
            tiny = Path(tiny_models[kind])
            if base_repo is not None and base_repo not in pushed_bases:
                push_folder(tiny, base_repo, card=False)  # the real base's repo id, holding the tiny model
                pushed_bases.add(base_repo)
            folder = work / case
            base_model = _build_case(case, tiny, folder)
            repo_id = f"{user}/{case}"
            push_folder(folder, repo_id, base_model=base_model)
            card = Path(hf_hub_download(repo_id, "README.md")).read_text()
            namespace, printed = _run_snippet(_python_block(card), work / "user")
            report[case] = {"repo_id": repo_id, "card": card, **_check_case(case, namespace, printed, repo_id, image)}
        except Exception:  # noqa: BLE001 - one broken case must not hide the others
            report[case] = {"error": traceback.format_exc()}
        report[case]["seconds"] = round(time.perf_counter() - started, 2)
    report_path.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    _main(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()))
    sys.exit(0)


# ----------------------------------------------------------------------------------------------------------------
# The tests.

import pytest  # noqa: E402

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def report(hub_server, tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("card-snippets")
    tiny_file = work / "tiny.json"
    tiny_file.write_text(json.dumps({kind: str(tiny_model(kind)) for kind, _ in CASES.values()}))
    env = {**os.environ, **hub_server.client_env(work / "hf-home")}
    done = subprocess.run([sys.executable, __file__, str(work / "report.json"), str(work), str(tiny_file)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((work / "report.json").read_text())


def _result(report, name: str) -> dict:
    result = report[name]
    assert "error" not in result, result.get("error")
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_card_names_the_real_base_and_the_repo(report, name):
    result = _result(report, name)
    card, base = result["card"], CASES[name][1]
    assert "BASE_MODEL" not in card
    assert f"radtune hub pull {result['repo_id']} ./{name}\n" in card
    assert card.count("```python\n") == 1
    for expected in [base] if base else TOWERS:
        assert "base_model:" in card and expected in card.split("---\n")[1], f"the YAML names {expected}"
        assert f"[{expected}](https://huggingface.co/{expected})" in card
    if name in ADAPTERS:
        assert f'.from_pretrained("{base}")' in _python_block(card), "the adapter loads onto the real base"
        assert f'PeftModel.from_pretrained(base, "{result["repo_id"]}")' in card


@pytest.mark.parametrize("name", ["llava-adapter", "llava-merged"])
def test_llava_snippets_answer_like_radtune_with_one_bos(report, name):
    result = _result(report, name)
    assert result["has_generate"]
    if name == "llava-adapter":
        assert result["model_class"] == "PeftModelForCausalLM"
        assert result["base_class"] == "LlavaForConditionalGeneration"
    else:
        assert result["model_class"] == "LlavaForConditionalGeneration"
    assert result["bos_count"] == 1 and result["starts_with_bos"]
    # The card's prompt is radtune's inference prompt, token for token, and greedy decoding answers alike.
    assert result["input_ids"] == result["radtune_input_ids"]
    assert result["answer"] == result["radtune_answer"]
    assert result["printed"] == result["answer"]


@pytest.mark.parametrize("name", ["vit-gpt2-lora", "blip-caption", "blip-vqa"])
def test_captioner_snippets_write_radtune_s_caption(report, name):
    result = _result(report, name)
    expected_class = {"vit-gpt2-lora": "PeftModel", "blip-caption": "BlipForConditionalGeneration",
                      "blip-vqa": "BlipForQuestionAnswering"}[name]  # fmt: skip
    assert result["model_class"] == expected_class
    assert isinstance(result["text"], str)
    assert result["text"] == result["radtune_text"]
    assert result["printed"] == result["text"]


@pytest.mark.parametrize("name", ["clip", "dual-encoder"])
def test_contrastive_snippets_embed_like_radtune(report, name):
    result = _result(report, name)
    assert len(result["image_shape"]) == 1 and result["text_shape"] == [2, result["image_shape"][0]]
    assert result["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert result["text_cosines"] == pytest.approx([1.0, 1.0], abs=1e-5)


def test_local_card_loads_the_folder_and_names_no_repo(tmp_path):
    """A run that was not pushed gets a card whose snippet loads the run folder, with no `radtune hub pull` line."""
    from radtune.common.model_card import build_model_card

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "llava-hf/llava-1.5-7b-hf"}))
    (tmp_path / "run_info.json").write_text(json.dumps({"task": "vqa", "base_model": "llava-hf/llava-1.5-7b-hf"}))
    text = build_model_card(tmp_path, None).text
    assert "radtune hub pull" not in text
    assert f'model = PeftModel.from_pretrained(base, "{tmp_path}")' in text
    assert 'base = AutoModelForImageTextToText.from_pretrained("llava-hf/llava-1.5-7b-hf")' in text


def test_composed_vit_gpt2_adapter_loads_its_base_from_the_same_repo(tmp_path):
    """An adapter on a ViT-GPT2 composed from --encoder/--decoder: the base travels in the run's `base_model/`."""
    from radtune.common.model_card import build_model_card

    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "base_model")})
    )
    (tmp_path / "run_info.json").write_text(json.dumps({"task": "captioning", "architecture": "vit-gpt2"}))
    (tmp_path / "base_model").mkdir()
    (tmp_path / "base_model" / "config.json").write_text(json.dumps({"model_type": "vision-encoder-decoder"}))
    text = build_model_card(tmp_path, "me/vitgpt2-lora").text
    assert 'base = VisionEncoderDecoderModel.from_pretrained("me/vitgpt2-lora", subfolder="base_model")' in text
    assert str(tmp_path) not in text.split("```python")[1]
