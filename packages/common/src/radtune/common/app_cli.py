"""`radtune app`: serve a run's model and its evaluations in a Gradio app, or write a Space folder for it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    "app",
    epilog="""\b
Examples:
  radtune app runs/demo/llava
  radtune app runs/llava-slake --eval runs/llava-slake/eval-vqa-validation --port 7861
  radtune app me/llava-slake-lora --export-space space/""",
)
@click.argument("run_or_repo")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
              help="Port to serve on (0: a free one).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: the network).")
@click.option("--eval", "evals", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="An evaluation folder to browse (repeatable), besides the run's own and its eval-* folders.")  # fmt: skip
@click.option("--share/--no-share", default=False, show_default=True, help="Also open a public gradio.live link.")
@click.option("--allow-credentialed-public", is_flag=True,
              help="Allow --share or --export-space for a run trained or evaluated on credentialed data.")  # fmt: skip
@click.option("--export-space", type=click.Path(file_okay=False, path_type=Path),
              help="Write a Hugging Face Space folder (app.py, requirements.txt, README.md) instead of serving.")  # fmt: skip
@click.option("--repo-id", help="With --export-space: the Hub repo the run was pushed to (default: RUN_OR_REPO).")
@click.option("--task", help="The task, when the model has no run_info.json (vqa, captioning, blip-vqa, contrastive).")
@click.option("--device", help="cuda, cpu, … (default: CUDA when available).")
def app(run_or_repo, port, host, evals, share, allow_credentialed_public, export_space, repo_id, task, device):
    """Try a trained model (an image or a DICOM, a question, a caption, label probabilities) and browse its
    evaluation in the browser.

    RUN_OR_REPO is a training run's folder or a Hub repo id. Endpoints for scripts (gradio_client): /answer (image,
    question), /caption (image), /classify (image, labels, exclusive). Served on this machine only unless --share.
    """
    from radtune.common.app import INSTALL_HINT, run_task
    from radtune.common.app.evaluations import find_evaluations
    from radtune.common.app.space import check_public

    if export_space is None:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise click.ClickException(f"radtune app needs gradio: {INSTALL_HINT}") from None
    from radtune.common.app.page import resolve_run

    folder, info = resolve_run(run_or_repo)
    task = run_task(folder, info, task)
    found = find_evaluations(folder, evals)
    if export_space is not None:
        check_public(folder, found, "Space", allow_credentialed_public)
        if repo_id is None and Path(run_or_repo).exists():
            raise click.UsageError("--export-space needs the Hub repo the run was pushed to: --repo-id you/name "
                                   f"(push it with `radtune hub push {run_or_repo} you/name`)")  # fmt: skip
        from radtune.common.app.space import export_space as write_space

        written = write_space(export_space, repo_id or run_or_repo, task)
        click.echo(
            f"wrote {', '.join(path.name for path in written)} into {export_space}; push it to a Space with "
            f"`hf upload you/space-name {export_space} --repo-type space`"
        )
        return
    if share:
        check_public(folder, found, "share link", allow_credentialed_public)
    from radtune.common.app.page import build_app

    demo = build_app(folder, evals, task=task, device=device)
    demo.launch(server_name=host, server_port=port or None, share=share)
