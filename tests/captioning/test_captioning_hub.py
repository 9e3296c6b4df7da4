"""A LoRA captioning adapter round-trips through the local Hub: train with --push_to_hub, then predict from the repo.

radtune takes the push out of the Trainer's hands: the Trainer never creates the repo nor pushes a checkpoint; the
run is published once, at the end, private unless --hub_private_repo false.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from captioning_data import make_image

pytestmark = pytest.mark.slow


def test_adapter_pushed_by_train_predicts_from_the_hub(hub_server, tiny_model, caption_dataset, tmp_path_factory):
    user = sys.modules["radtune_test_hub_server"].USER
    repo_id = f"{user}/vitgpt2-caption-lora"
    work = tmp_path_factory.mktemp("caption-hub")
    env = {**os.environ, **hub_server.client_env(work / "hf-home")}
    out = work / "run"
    train = subprocess.run(
        [sys.executable, "-m", "radtune.captioning.train", "--architecture", "vit-gpt2",
         "--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name", str(caption_dataset),
         "--output_dir", str(out), "--max_steps", "2", "--use_peft", "--eval_strategy", "no",
         "--save_strategy", "steps", "--save_steps", "1",  # the Trainer's own push would send every checkpoint
         "--eval_after_training", "false", "--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0",
         "--push_to_hub", "--hub_model_id", repo_id],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-4000:]
    assert f"pushed {out} to" in train.stdout and "(private: True)" in train.stdout
    repo = hub_server.state.repos[("model", repo_id)]
    assert repo.private  # private by default (the Trainer would have created it with the Hub's default: public)
    titles = [commit.title for commit in repo.commits.values()]
    assert titles == ["initial commit", "Upload run with radtune"], titles  # one push, by radtune, at the end
    files = repo.resolve("main").files
    assert "adapter_model.safetensors" in files and "run_info.json" in files
    assert not [name for name in files if name.startswith("checkpoint-")]

    image = work / "x.png"
    make_image(1).save(image)
    # one client process: the pushed bytes, the card, and the adapter loaded from the Hub (on its base) captioning
    # exactly as the local folder does, both through `radtune caption predict`
    check = (
        "import sys, pathlib; from huggingface_hub import hf_hub_download\n"
        "from click.testing import CliRunner; from radtune.common.cli import cli\n"
        "repo, local, image = sys.argv[1:]\n"
        "remote = pathlib.Path(hf_hub_download(repo, 'adapter_model.safetensors')).read_bytes()\n"
        "assert remote == (pathlib.Path(local) / 'adapter_model.safetensors').read_bytes(), 'adapter bytes differ'\n"
        "card = pathlib.Path(hf_hub_download(repo, 'README.md')).read_text()\n"
        "assert 'lora' in card and 'medical' in card, card\n"
        "runs = [CliRunner().invoke(cli, ['caption', 'predict', '--model', m, '--image', image, '--device', 'cpu'])\n"
        "        for m in (repo, local)]\n"
        "assert all(r.exit_code == 0 for r in runs), [r.stdout for r in runs]\n"
        "assert runs[0].stdout == runs[1].stdout and runs[0].stdout.endswith('\\n'), [r.stdout for r in runs]\n"
    )
    done = subprocess.run([sys.executable, "-c", check, repo_id, str(out), str(image)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
