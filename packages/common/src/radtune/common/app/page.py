"""The Gradio page of `radtune app`: a model tab (named API endpoints `/answer`, `/caption`, `/classify`) and, when
the run has an evaluation, an evaluation browser.

    from radtune.common.app.page import build_app

    demo = build_app("runs/demo/llava")            # loads the model once
    demo.launch(server_name="127.0.0.1", server_port=7860)

Scripts call the endpoints with `gradio_client`:

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/")
    client.predict(handle_file("chest.dcm"), "Is there a pleural effusion?", api_name="/answer")
    client.predict(handle_file("chest.png"), api_name="/caption")
    client.predict(handle_file("chest.png"), "Cardiomegaly, Effusion", False, api_name="/classify")

An upload that is not an image (or a corrupt DICOM) gives a one-line message in the page (and a `gr.Error` through
the API), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from radtune.common.app import INSTALL_HINT, AppModel, load_app_model, parse_labels
from radtune.common.app import evaluations as browse

# `?tab=evaluation` in the address opens that tab (for links and for scripts/app_screenshot.py).
OPEN_TAB_FROM_URL = """() => {
  const wanted = new URLSearchParams(window.location.search).get("tab");
  if (!wanted) return;
  const open = (tries) => {
    const tab = [...document.querySelectorAll('button[role="tab"]')]
      .find((button) => button.innerText.trim().toLowerCase().startsWith(wanted.toLowerCase()));
    if (tab) tab.click(); else if (tries > 0) setTimeout(() => open(tries - 1), 200);
  };
  open(25);
}"""


def require_gradio():
    """The `gradio` module, or an `ImportError` saying which extra brings it."""
    try:
        import gradio
    except ImportError as error:
        raise ImportError(f"radtune app needs gradio: {INSTALL_HINT}") from error
    return gradio


def open_upload(path: str | None):
    """The uploaded file as training opens it (`radtune.common.images.load_image`, DICOM windowed), RGB.

    Raises:
        `ValueError`: nothing uploaded, or a file that is not an image or a readable DICOM (one line).
    """
    from radtune.common.images import ImageLoadError, load_image

    if not path:
        raise ValueError("upload an image (PNG, JPEG, …) or a DICOM file first")
    name = Path(path).name
    try:
        return load_image(path)
    except (ImageLoadError, OSError) as error:
        reason = str(error).replace(str(path), name)
        raise ValueError(f"could not read {name}: not an image or a readable DICOM file ({reason})") from error


def resolve_run(model: str | Path) -> tuple[Path, dict]:
    """A local folder for a run folder or Hub repo id, and its `run_info.json` (`{}` when it has none)."""
    from radtune.common.hub import resolve_model_path
    from radtune.common.run import read_run_info

    folder = resolve_model_path(str(model))
    return folder, read_run_info(folder)


def build_app(
    model: str | Path,
    evals: Iterable[str | Path] = (),
    *,
    task: str | None = None,
    device: str | None = None,
    app_model: AppModel | None = None,
):
    """Build the app of a run (its model loaded once) with the browser of its evaluations.

    Args:
        model (`str` or `Path`): a training run's folder, a model folder, or a Hub repo id.
        evals (`Iterable`, *optional*): more evaluation folders, after the run's own and its `eval-*` folders.
        task (`str`, *optional*): the task, when `run_info.json` does not say (`vqa`, `captioning`, `blip-vqa`,
            `contrastive`).
        device (`str`, *optional*): `cuda`, `cpu`, …; defaults to CUDA when available.
        app_model (`AppModel`, *optional*): an already loaded model (the run's is loaded otherwise).

    Returns:
        `gradio.Blocks`: call `.launch(...)` on it.
    """
    gr = require_gradio()
    folder, info = resolve_run(model)
    app_model = app_model or load_app_model(folder, info, task=task, device=device)
    image_column = info.get("image_column") or "image"
    loaded = [browse.read_evaluation(path, image_column) for path in browse.find_evaluations(folder, evals)]
    by_label = {}
    for evaluation in loaded:  # two folders of the same name (a --eval elsewhere) keep apart by their path
        by_label[evaluation.label if evaluation.label not in by_label else f"{evaluation.label} {evaluation.folder}"] = (
            evaluation)  # fmt: skip
    labels = next((list(e.report["meta"]["classes"]) for e in loaded if e.report["meta"].get("classes")),
                  app_model.labels)  # fmt: skip

    def with_image(function):
        """Open the upload, run `function(image, …)`; a bad upload becomes a one-line `gr.Error`."""

        def run(path, *args):
            try:
                image = open_upload(path)
            except ValueError as error:
                raise gr.Error(str(error), print_exception=False) from None
            return function(image, *args)

        return run

    def preview(path):
        if not path:
            return None, ""
        try:
            return open_upload(path), ""
        except ValueError as error:
            return None, f"**{error}**"

    def answer(image, question: str) -> str:
        if not (question or "").strip():
            raise gr.Error("type a question first", print_exception=False)
        return app_model.answer(image, question.strip())

    def classify(image, label_text: str, exclusive: bool = False) -> dict[str, float]:
        wanted = parse_labels(label_text or "")
        if not wanted:
            raise gr.Error("type one or more labels, separated by commas", print_exception=False)
        return app_model.classify(image, wanted, bool(exclusive))

    with gr.Blocks(title=f"radtune app: {Path(app_model.name).name}") as demo:
        gr.Markdown(f"# radtune app: `{app_model.name}`\n\ntask: **{app_model.task}**"
                    + "".join(f" · {note}" for note in app_model.notes))  # fmt: skip
        if not loaded:
            gr.Markdown(browse.how_to_evaluate(app_model.task, folder))
        with gr.Tab("Try the model"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="Image or DICOM", type="filepath")
                    shown = gr.Image(label="As the model sees it (DICOM windowed as in training)", type="pil",
                                     interactive=False, height=320)  # fmt: skip
                    status = gr.Markdown()
                with gr.Column():
                    if app_model.answer is not None:
                        question = gr.Textbox(label="Question", placeholder="Is there a pleural effusion?")
                        answer_out = gr.Textbox(label="Answer")
                        gr.Button("Answer", variant="primary").click(
                            with_image(answer), [upload, question], answer_out, api_name="answer")  # fmt: skip
                    if app_model.caption is not None:
                        caption_out = gr.Textbox(label="Caption")
                        gr.Button("Caption", variant="primary").click(
                            with_image(app_model.caption), [upload], caption_out, api_name="caption")  # fmt: skip
                    if app_model.classify is not None:
                        label_box = gr.Textbox(label="Labels (comma-separated, editable)", value=", ".join(labels))
                        exclusive = gr.Checkbox(label="One of these labels (softmax over the labels, as typed)",
                                                value=False)  # fmt: skip
                        scores_out = gr.Label(label="Label probabilities", num_top_classes=20)
                        gr.Button("Classify", variant="primary").click(
                            with_image(classify), [upload, label_box, exclusive], scores_out, api_name="classify")  # fmt: skip
            upload.change(preview, upload, [shown, status], api_visibility="private")
        if loaded:
            _evaluation_tab(gr, by_label)
        demo.load(None, None, None, js=OPEN_TAB_FROM_URL)
    return demo


def _evaluation_tab(gr, by_label: dict) -> None:
    """The evaluation browser: headline metrics and verdict, filters, sort, the rows' images and table."""
    import pandas as pd

    first = next(iter(by_label.values()))

    def choices(evaluation):
        return (browse.answer_type_choices(evaluation.rows), browse.subgroup_choices(evaluation.rows))

    def render(label, correct, answer_type, subgroup, sort):
        evaluation = by_label[label]
        rows = browse.filter_rows(evaluation.rows, correct, answer_type, subgroup, sort)
        columns, cells = browse.table(evaluation.task, rows)
        count = f"{len(rows)} of {len(evaluation.rows)} items"
        return browse.gallery(evaluation, rows), pd.DataFrame(cells, columns=columns), count

    def switch(label):
        evaluation = by_label[label]
        types, groups = choices(evaluation)
        headline = browse.headline_markdown(evaluation)
        reset = (gr.update(choices=types, value=browse.ALL), gr.update(choices=groups, value=browse.ALL))
        return (headline, browse.ALL, *reset, browse.SORT_CHOICES[0],
                *render(label, browse.ALL, browse.ALL, browse.ALL, browse.SORT_CHOICES[0]))  # fmt: skip

    types, groups = choices(first)
    with gr.Tab("Evaluation"):
        with gr.Row():
            with gr.Column(scale=3):
                headline = gr.Markdown(browse.headline_markdown(first))
            with gr.Column(scale=2):
                picked = gr.Dropdown(list(by_label), value=first.label, label="Evaluation")
                correct = gr.Radio(list(browse.CORRECT_CHOICES), value=browse.ALL, label="Items")
                with gr.Row():
                    answer_type = gr.Dropdown(types, value=browse.ALL, label="Answer type")
                    subgroup = gr.Dropdown(groups, value=browse.ALL, label="Subgroup")
                sort = gr.Radio(list(browse.SORT_CHOICES), value=browse.SORT_CHOICES[0], label="Order")
                shown, table, counted = render(first.label, browse.ALL, browse.ALL, browse.ALL,
                                               browse.SORT_CHOICES[0])  # fmt: skip
                count = gr.Markdown(counted)
        images = gr.Gallery(shown, label="Items (✓ correct, ✗ wrong): [question →] prediction (ref: reference) [id]", columns=8,
                            height=360)  # fmt: skip
        rows = gr.Dataframe(table, label="evaluation_results.csv", interactive=False, wrap=True)
        filters = [picked, correct, answer_type, subgroup, sort]
        # Callable as `/browse` by scripts (and tests), though left out of the documented API.
        gr.on([control.change for control in filters[1:]], render, filters, [images, rows, count],
              api_name="browse", api_visibility="undocumented")  # fmt: skip
        picked.change(switch, picked, [headline, correct, answer_type, subgroup, sort, images, rows, count],
                      api_visibility="private")  # fmt: skip
