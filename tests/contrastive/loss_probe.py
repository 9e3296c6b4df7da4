"""Run under torchrun (2 gloo ranks): each rank computes each loss on its half of one global batch, backpropagates
and averages the gradients over ranks as DDP does; rank 0 writes losses and gradients (used by test_contrastive_losses.py)."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from radtune.contrastive.losses import InfoNCELoss, TripletLoss

CASES = {
    "infonce": lambda: InfoNCELoss(),
    "infonce_local": lambda: InfoNCELoss(local_loss=True),
    "triplet_hardest": lambda: TripletLoss(margin=0.3, mining="hardest"),
    "triplet_semi_hard_local": lambda: TripletLoss(margin=0.3, mining="semi-hard", local_loss=True),
}


def problem(seed: int = 0):
    """A global batch of 8 pairs and two linear encoders (the parameters whose gradients are compared)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(8, 6, generator=generator)
    texts = torch.randn(8, 5, generator=generator)
    image_encoder = torch.nn.Linear(6, 4)
    text_encoder = torch.nn.Linear(5, 4)
    with torch.no_grad():
        for module in (image_encoder, text_encoder):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
            module.bias.copy_(torch.randn(module.bias.shape, generator=generator))
    logit_scale = torch.nn.Parameter(torch.tensor(2.0))
    return images, texts, image_encoder, text_encoder, logit_scale


def loss_and_grads(loss_fn, rows: slice):
    images, texts, image_encoder, text_encoder, logit_scale = problem()
    image_features = torch.nn.functional.normalize(image_encoder(images[rows]), dim=-1)
    text_features = torch.nn.functional.normalize(text_encoder(texts[rows]), dim=-1)
    loss = loss_fn(image_features, text_features, logit_scale)
    loss.backward()
    grads = {"image.weight": image_encoder.weight.grad, "image.bias": image_encoder.bias.grad,
             "text.weight": text_encoder.weight.grad, "logit_scale": logit_scale.grad}  # fmt: skip
    return loss.detach(), {name: torch.zeros(()) if g is None else g for name, g in grads.items()}


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    per_rank = 8 // world
    report = {}
    for name, make in CASES.items():
        loss, grads = loss_and_grads(make(), slice(rank * per_rank, (rank + 1) * per_rank))
        dist.all_reduce(loss)
        for grad in grads.values():
            dist.all_reduce(grad)
        report[name] = {"loss": (loss / world).item(), "grads": {k: (g / world).tolist() for k, g in grads.items()}}
    if rank == 0:
        out.write_text(json.dumps(report))
    # Leave together and tear the group down: exiting with a live gloo group aborted a rank now and then.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
