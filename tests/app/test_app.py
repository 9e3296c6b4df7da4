"""`radtune app`: the endpoints through gradio_client for a tiny VQA, captioning and CLIP run, the evaluation
browser, the credentialed refusal, bad uploads, the Space export, and the page in headless Chromium.

The runs are tiny models saved with radtune's own builders plus the `run_info.json` a trainer writes (no training:
the app serves whatever weights a run holds), evaluated by the real `radtune … evaluate` commands.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

gradio = pytest.importorskip("gradio", reason="needs the app extra: pip install 'radtune-common[app]'")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from radtune.common.cli import cli  # noqa: E402

CLASSES = ("Cardiomegaly", "Effusion")
# gradio's queue calls pandas options that pandas 3 deprecates: their code, not radtune's
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def _radiograph(seed: int, finding: bool, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.normal(60, 10, (size, size)).clip(0, 255).astype(np.uint8), mode="L").convert("RGB")
    if finding:
        ImageDraw.Draw(image).ellipse((8, 8, 24, 24), fill=(240, 240, 240))
    return image


def _qa_row(index: int) -> dict:
    closed = index % 3 != 2
    question, answer = ("Is there a nodule?", "Yes." if index % 2 == 0 else "No.") if closed else (
        "Where is the nodule?", "left lung")  # fmt: skip
    return {
        "id": f"q{index}",
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": [_radiograph(index, index % 2 == 0)],
        "question": question,
        "answer": answer,
        "answer_type": "closed" if closed else "open",
        "category": "presence" if closed else "location",
    }


def _pair_rows(n: int, offset: int) -> dict:
    rows = {"id": [], "image": [], "impression": [], "labels": []}
    for i in range(offset, offset + n):
        labels = [name for j, name in enumerate(CLASSES) if (i >> j) & 1]
        rows["id"].append(f"s{i:02d}")
        rows["image"].append(_radiograph(i, bool(labels), size=48).convert("L"))
        rows["impression"].append(", ".join(labels) or "No acute cardiopulmonary process.")
        rows["labels"].append(labels or ["No Finding"])
    return rows


def _write_run_info(folder: Path, task: str, dataset: Path, **facts) -> None:
    info = {"task": task, "base_model": None, "dataset": str(dataset), "train_split": "train", "test_split": "test",
            "image_column": "image", "seed": 0, "credentialed": False, **facts}  # fmt: skip
    (folder / "run_info.json").write_text(json.dumps(info, indent=2))


def _radtune(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three run folders (tiny LLaVA, ViT-GPT2, CLIP with run_info.json) and their evaluations, plus the datasets."""
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    from datasets import Image as ImageFeature

    from radtune.common.tiny import build_tiny

    root = tmp_path_factory.mktemp("app")
    qa = root / "qa"
    rows = [_qa_row(i) for i in range(12)]
    DatasetDict({"train": Dataset.from_list(rows[:6]), "test": Dataset.from_list(rows[6:])}).save_to_disk(qa)
    pairs = root / "pairs"
    features = Features({"id": Value("string"), "image": ImageFeature(), "impression": Value("string"),
                         "labels": Sequence(Value("string"))})  # fmt: skip
    DatasetDict({"train": Dataset.from_dict(_pair_rows(6, 0), features=features),
                 "test": Dataset.from_dict(_pair_rows(6, 6), features=features)}).save_to_disk(pairs)  # fmt: skip
    texts = [row["question"] + " " + row["answer"] for row in rows]

    llava = build_tiny("llava", root / "llava", texts=texts)
    _write_run_info(llava, "vqa", qa, max_new_tokens=4)
    _radtune("vqa", "evaluate", "--model", llava, "--dataset", qa, "--split", "test", "--max-new-tokens", 4,
             "--n-resamples", 50)  # fmt: skip
    captioner = build_tiny("vit-gpt2", root / "caption", texts=_pair_rows(12, 0)["impression"])
    _write_run_info(captioner, "captioning", pairs, text_column="impression", architecture="vit-gpt2")
    _radtune("caption", "evaluate", "--model", captioner, "--dataset", pairs, "--split", "test", "--text-column",
             "impression", "--no-meteor", "--no-ablation", "--n-resamples", 50)  # fmt: skip
    clip = build_tiny("clip", root / "clip", texts=_pair_rows(12, 0)["impression"])
    _write_run_info(clip, "contrastive", pairs, text_column="impression", architecture="clip")
    zero_shot = root / "zero-shot"  # outside the run: the app finds it only through --eval
    _radtune("clip", "zero-shot", "--model", clip, "--dataset", pairs, "--split", "test", "--labels",
             ",".join(CLASSES), "--n-resamples", 50, "--out", zero_shot)  # fmt: skip
    image = root / "upload.png"
    _radiograph(99, True).save(image)
    return {"root": root, "qa": qa, "pairs": pairs, "llava": llava, "caption": captioner, "clip": clip,
            "zero_shot": zero_shot, "image": image}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """An app launched in this process on a free loopback port, with a gradio_client for it."""

    def __init__(self, demo):
        self.demo = demo
        self.port = _free_port()
        demo.launch(server_name="127.0.0.1", server_port=self.port, prevent_thread_lock=True, quiet=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.client = Client(self.url, verbose=False)

    def close(self):
        self.demo.close()


@pytest.fixture(scope="module")
def vqa_app(runs):
    from radtune.common.app.page import build_app

    served = Served(build_app(runs["llava"], device="cpu"))
    yield served
    served.close()


def test_answer_endpoint_matches_vqa_predict_and_loads_the_model_once(runs, monkeypatch):
    import radtune.llava_vqa.inference as inference
    from radtune.common.app.page import build_app

    loads = []
    original = inference.load_vqa_model
    monkeypatch.setattr(inference, "load_vqa_model", lambda *a, **k: loads.append(a) or original(*a, **k))
    served = Served(build_app(runs["llava"], device="cpu"))
    try:
        question = "Is there a nodule?"
        first = served.client.predict(handle_file(str(runs["image"])), question, api_name="/answer")
        second = served.client.predict(handle_file(str(runs["image"])), question, api_name="/answer")
        assert len(loads) == 1  # loaded when the app was built, not per request
    finally:
        served.close()
    # run_info.json recorded max_new_tokens 4: the app decodes as the run's evaluation does
    expected = _radtune("vqa", "predict", "--model", runs["llava"], "--image", runs["image"], "--question", question,
                        "--max-new-tokens", 4, "--device", "cpu").removesuffix("\n")  # fmt: skip
    assert first == second == expected


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"just some text, not pixels", "notes.txt"), (b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage", "bad.dcm")],
)
def test_bad_upload_is_a_message_not_a_traceback(vqa_app, tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError) as raised:
        vqa_app.client.predict(handle_file(str(path)), "Is there a nodule?", api_name="/answer")
    message = str(raised.value)
    assert f"could not read {name}: not an image or a readable DICOM file" in message
    assert "Traceback" not in message and str(tmp_path) not in message


def test_browser_filters_through_the_page(vqa_app, runs):
    from radtune.common.app import evaluations as browse

    evaluation = browse.read_evaluation(runs["llava"] / "eval-vqa-test")
    wrong = sum(not row["correct"] for row in evaluation.rows)
    label = evaluation.label
    shown, table, count = vqa_app.client.predict(label, "incorrect", "all", "all", browse.SORT_CHOICES[0],
                                                 api_name="/browse")  # fmt: skip
    assert count == f"{wrong} of 6 items" and len(table["data"]) == wrong == len(shown)
    shown, table, count = vqa_app.client.predict(label, "all", "open", "category = location", browse.SORT_CHOICES[0],
                                                 api_name="/browse")  # fmt: skip
    ids = [row[table["headers"].index("id")] for row in table["data"]]
    assert ids == ["q8", "q11"] and count == "2 of 6 items"


def test_caption_endpoint_matches_caption_predict(runs):
    from radtune.common.app.page import build_app

    served = Served(build_app(runs["caption"], device="cpu"))
    try:
        text = served.client.predict(handle_file(str(runs["image"])), api_name="/caption")
        names = {endpoint for endpoint in served.client.view_api(print_info=False, return_format="dict")[
            "named_endpoints"]}  # fmt: skip
    finally:
        served.close()
    expected = _radtune("caption", "predict", "--model", runs["caption"], "--image", runs["image"], "--device", "cpu")
    assert text == expected.removesuffix("\n")
    assert "/caption" in names and "/answer" not in names and "/classify" not in names


def test_blip_vqa_answers_as_caption_predict(runs, tmp_path):
    from radtune.common.app.page import build_app
    from radtune.common.tiny import build_tiny

    blip = build_tiny("blip-vqa", tmp_path / "blip-vqa", texts=["Is there a nodule? yes", "no left lung"])
    _write_run_info(blip, "blip-vqa", runs["qa"], architecture="blip")
    served = Served(build_app(blip, device="cpu"))
    try:
        answer = served.client.predict(handle_file(str(runs["image"])), "Is there a nodule?", api_name="/answer")
    finally:
        served.close()
    expected = _radtune("caption", "predict", "--model", blip, "--image", runs["image"], "--question",
                        "Is there a nodule?", "--device", "cpu")  # fmt: skip
    assert answer == expected.removesuffix("\n")


def test_classify_endpoint_matches_the_zero_shot_evaluation(runs):
    import csv

    from datasets import load_from_disk
    from pydicom.data import get_testdata_file

    from radtune.common.app.page import build_app
    from radtune.common.images import load_image

    served = Served(build_app(runs["clip"], [runs["zero_shot"]], device="cpu"))
    test = load_from_disk(str(runs["pairs"]))["test"]
    upload = runs["root"] / "s06.png"
    test[0]["image"].save(upload)
    try:
        scores = served.client.predict(handle_file(str(upload)), ", ".join(CLASSES), False, api_name="/classify")
        exclusive = served.client.predict(handle_file(str(upload)), "Cardiomegaly, Effusion, Pneumothorax", True,
                                          api_name="/classify")  # fmt: skip
        # A DICOM is read as training reads it: the same scores as its windowed image saved as a PNG
        dicom = get_testdata_file("CT_small.dcm")
        windowed = runs["root"] / "ct_small.png"
        load_image(dicom).save(windowed)
        from_dicom, from_png = (served.client.predict(handle_file(str(path)), "Effusion", False, api_name="/classify")
                                for path in (dicom, windowed))  # fmt: skip
    finally:
        served.close()
    with open(runs["zero_shot"] / "zero_shot_scores.csv", newline="") as handle:
        expected = next(row for row in csv.DictReader(handle) if row["id"] == test[0]["id"])
    got = {item["label"]: item["confidence"] for item in scores["confidences"]}
    assert set(got) == set(CLASSES)
    for name in CLASSES:  # the CSV keeps 6 decimals
        assert got[name] == pytest.approx(float(expected[name]), abs=2e-6)
    assert from_dicom["confidences"] == from_png["confidences"]
    shares = [item["confidence"] for item in exclusive["confidences"]]
    assert len(shares) == 3 and sum(shares) == pytest.approx(1.0, abs=1e-6)


def test_evaluation_browser_rows_scores_filters_and_headline(runs):
    from radtune.common.app import evaluations as browse
    from radtune.common.metrics.bootstrap import ablation_message
    from radtune.common.metrics.io import read_metrics

    [folder] = browse.find_evaluations(runs["llava"])
    assert folder == runs["llava"] / "eval-vqa-test"
    evaluation = browse.read_evaluation(folder)
    assert len(evaluation.rows) == 6 and evaluation.image_note is None
    assert set(evaluation.images) == {row["id"] for row in evaluation.rows}  # every row has its image
    for row in evaluation.rows:  # hand rule: a closed answer scores 1 only when its yes/no matches
        if row["answer_type"] == "closed":
            said = row["prediction"].lower().strip(" .")
            assert row["score"] == float(said == row["answer"].lower().strip(" ."))
    correct = browse.filter_rows(evaluation.rows, correct="correct")
    wrong = browse.filter_rows(evaluation.rows, correct="incorrect")
    assert len(correct) + len(wrong) == 6 and all(row["correct"] for row in correct)
    assert [row["answer_type"] for row in browse.filter_rows(evaluation.rows, answer_type="open")] == ["open"] * 2
    assert browse.subgroup_choices(evaluation.rows) == ["all", "category = location", "category = presence"]
    assert len(browse.filter_rows(evaluation.rows, subgroup="category = location")) == 2
    ordered = [row["score"] for row in browse.filter_rows(evaluation.rows, sort=browse.SORT_CHOICES[1])]
    assert ordered == sorted(ordered)
    headline = browse.headline_markdown(evaluation)
    report = read_metrics(folder)
    low, high = report["ci"]["strict/closed_accuracy"]
    # The majority answer by hand: the training split says "Yes." twice and "No." twice to "Is there a nodule?" (a
    # tie goes to the alphabetically first, "No."), right on 2 of the 4 closed test items.
    value = report["metrics"]["strict/closed_accuracy"]
    row = f"| strict/closed_accuracy | {value:.3f} | [{low:.3f}, {high:.3f}] | 0.500 (majority baseline) |"
    assert row in headline
    verdict = ablation_message(report["meta"]["image_ablation"])
    assert verdict in headline and headline.index(verdict) < headline.index(row)  # the verdict at the top
    assert len(browse.gallery(evaluation, evaluation.rows)) == 6


def test_item_scores_by_hand(tmp_path):
    from radtune.common.app import evaluations as browse

    rows = [{"prediction": "yes", "references": ["Yes."], "answer": "Yes.", "answer_type": "closed"},
            {"prediction": "no", "references": ["Yes."], "answer": "Yes.", "answer_type": "closed"},
            {"prediction": "left lung base", "references": ["left lung"], "answer": "left lung", "answer_type": "open"},
            {"prediction": "right", "references": ["left lung"], "answer": "left lung", "answer_type": "open"}]  # fmt: skip
    assert browse.item_scores("vqa", rows, {}) == [1.0, 0.0, 1.0, 0.0]  # open recall: reference tokens found
    zero_shot = [
        {"prediction": "Effusion", "references": ["Effusion", "Mass"]},
        {"prediction": "", "references": [""]},
    ]
    assert browse.item_scores("zero-shot", zero_shot, {"classes": ["Effusion", "Mass", "Nodule"]}) == [2 / 3, 1.0]


def test_evaluation_folders_are_found_in_order_and_credentialed_ones_are_not_shared(tmp_path):
    from radtune.common.app.evaluations import find_evaluations
    from radtune.common.app.space import check_public
    from radtune.common.credentialed import CredentialedPublishError
    from radtune.common.metrics.io import write_metrics, write_results

    def evaluation(folder, **meta):
        write_results(folder, [{"id": "a", "prediction": "yes", "references": ["yes"]}])
        write_metrics(folder, {"strict/accuracy": 1.0}, task="vqa", extra_meta=meta or None)

    run = tmp_path / "run"
    for folder in (run, run / "eval-vqa-test-2", run / "eval-vqa-test", tmp_path / "elsewhere"):
        evaluation(folder)
    (run / "eval-empty").mkdir()
    found = find_evaluations(run, [tmp_path / "elsewhere", run / "eval-vqa-test"])
    assert found == [run, run / "eval-vqa-test", run / "eval-vqa-test-2", tmp_path / "elsewhere"]
    with pytest.raises(ValueError, match="--eval .*eval-empty: no evaluation_results.csv"):
        find_evaluations(run, [run / "eval-empty"])
    assert check_public(run, found, "share link") == set()
    evaluation(run / "eval-vqa-mimic", credentialed=True)  # a test on credentialed data inside a public run
    with pytest.raises(CredentialedPublishError, match=r"\(eval-vqa-mimic/metrics.json\), so no share link"):
        check_public(run, find_evaluations(run), "share link")
    assert check_public(run, find_evaluations(run), "share link", allow=True) == {"eval-vqa-mimic/metrics.json"}


def test_no_evaluation_gives_the_model_tab_alone_and_says_how(runs):
    from radtune.common.app import evaluations as browse
    from radtune.common.app import load_app_model
    from radtune.common.app.page import build_app

    model = load_app_model(runs["clip"], json.loads((runs["clip"] / "run_info.json").read_text()), device="cpu")
    with_eval = json.dumps(build_app(runs["clip"], [runs["zero_shot"]], app_model=model).config)
    without = json.dumps(build_app(runs["clip"], app_model=model).config)
    command = f"radtune clip zero-shot --model {runs['clip']} --dataset DATA --split test --labels nih"
    assert browse.how_to_evaluate("contrastive", runs["clip"]).startswith("**No evaluation to browse yet.**")
    assert '"label": "Evaluation"' in with_eval and "No evaluation to browse yet" not in with_eval
    assert '"label": "Evaluation"' not in without and command in without


def test_credentialed_run_is_not_shared_or_exported_without_the_flag(runs, tmp_path):
    run = tmp_path / "credentialed-run"
    shutil.copytree(runs["llava"], run)
    info = json.loads((run / "run_info.json").read_text())
    (run / "run_info.json").write_text(json.dumps({**info, "credentialed": True}))
    for args in (["--share"], ["--export-space", tmp_path / "space", "--repo-id", "me/x"]):
        result = CliRunner().invoke(cli, ["app", str(run), *map(str, args)])
        assert result.exit_code == 1
        assert "credentialed data (run_info.json)" in result.output
        assert "--allow-credentialed-public" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "space").exists()
    _radtune("app", run, "--export-space", tmp_path / "space", "--repo-id", "me/x", "--allow-credentialed-public")
    assert (tmp_path / "space" / "app.py").is_file()


def test_export_space_folder_runs_the_same_app(runs, tmp_path):
    import runpy

    import yaml

    out = tmp_path / "space"
    _radtune("app", runs["llava"], "--export-space", out, "--repo-id", "me/tiny-llava")
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    readme = (out / "README.md").read_text()
    meta = yaml.safe_load(readme.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["models"] == ["me/tiny-llava"]
    assert meta["sdk_version"] == gradio.__version__
    assert (out / "requirements.txt").read_text().split() == ["radtune-common[app]>=0.1,<0.2",
                                                              "radtune-llava-vqa>=0.1,<0.2"]  # fmt: skip
    # The Space's app.py for this run's folder instead of the repo id: the same app, with the same endpoint
    code = (out / "app.py").read_text().replace("'me/tiny-llava'", repr(str(runs["llava"])))
    (tmp_path / "local_app.py").write_text(code)
    demo = runpy.run_path(str(tmp_path / "local_app.py"), run_name="space")["demo"]
    assert "answer" in {dependency.get("api_name") for dependency in demo.config["dependencies"]}


def test_missing_gradio_names_the_extra(fresh_cli):
    code, output, loaded = fresh_cli("app", "--help")
    assert code == 0 and "--export-space" in output and not loaded  # --help imports no torch, no task package
    script = ("import sys; sys.modules['gradio'] = None\n"
              "from click.testing import CliRunner\nfrom radtune.common.cli import cli\n"
              "r = CliRunner().invoke(cli, ['app', 'runs/none']); print(r.exit_code); print(r.output)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "1"
    assert "radtune app needs gradio: pip install 'radtune-common[app]'" in result.stdout


def test_page_renders_in_headless_chromium(vqa_app, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium: install Debian's browser with `sudo apt-get install -y chromium`")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,900", "--virtual-time-budget=15000", f"--screenshot={shot}",
                    vqa_app.url + "?tab=evaluation"], capture_output=True, timeout=90, check=False)  # fmt: skip
    assert shot.is_file(), "chromium wrote no screenshot"
    if os.environ.get("RADTUNE_APP_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["RADTUNE_APP_SCREENSHOT"])
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, f"the page looks blank (pixel std {pixels.std():.1f})"
