"""Run under a launcher: each worker records what it sees of the process group (used by test_launch.py)."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import PartialState

state = PartialState(cpu=True)
total = torch.tensor([float(state.process_index + 1)])
dist.all_reduce(total)
report = {
    "WORLD_SIZE": os.environ.get("WORLD_SIZE"),
    "num_processes": state.num_processes,
    "process_index": state.process_index,
    "backend": state.backend,
    "all_reduce_sum": total.item(),
}
Path(sys.argv[1], f"rank{state.process_index}.json").write_text(json.dumps(report))
dist.barrier()
state.destroy_process_group()  # a clean gloo teardown; exiting with the group alive can abort a rank
