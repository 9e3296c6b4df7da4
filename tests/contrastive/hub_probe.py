"""Run in a subprocess pointed at the local Hub server (test_contrastive_dual_encoder.py): train a tiny dual encoder with
`--push_to_hub`, then load it back by repo id and compare with the local folder. Writes a JSON report."""

import json
import sys
from pathlib import Path

import torch

from radtune.common.config import parse_args_and_config
from radtune.contrastive.dual_encoder import DualEncoderModel
from radtune.contrastive.modeling import load_contrastive
from radtune.contrastive.train import main, make_parser

out, dataset, tiny, tiny_clip = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
repo_id = "radtune-tester/tiny-dual-encoder-phantom"
run = out.parent / "run"
main(*parse_args_and_config(make_parser(), [
    "--dataset_name", dataset, "--output_dir", str(run), "--max_steps", "2", "--per_device_train_batch_size", "8",
    "--use_cpu", "true", "--architecture", "dual-encoder", "--text_model_name_or_path", str(tiny / "text"),
    "--image_model_name_or_path", str(tiny / "image"), "--projection_dim", "16", "--report_to", "none",
    "--push_to_hub", "true", "--hub_model_id", repo_id, "--save_strategy", "no",
]))  # fmt: skip
local = DualEncoderModel.from_pretrained(run).state_dict()
pulled_model, processor = load_contrastive(repo_id)
pulled = pulled_model.state_dict()
from huggingface_hub import HfApi  # noqa: E402

files = HfApi().list_repo_files(repo_id)
private = HfApi().model_info(repo_id).private
card = (run / "README.md").read_text()
# A CLIP repo loads through transformers directly (no dual-encoder config in it).
from radtune.common.hub import push_folder  # noqa: E402

push_folder(tiny_clip, "radtune-tester/tiny-clip-contrastive")
clip_model, _ = load_contrastive("radtune-tester/tiny-clip-contrastive")
out.write_text(json.dumps({
    "same_keys": sorted(local) == sorted(pulled),
    "same_weights": all(torch.equal(local[k], pulled[k]) for k in local),
    "files": files,
    "private": private,
    "tokenizer": type(processor.tokenizer).__name__,
    "card_mentions_contrastive": "contrastive" in card,
    "clip_class": type(clip_model).__name__,
}))  # fmt: skip
