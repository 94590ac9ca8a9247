"""Data parallel training through Hugging Face Accelerate: 2 CPU processes (gloo).

``accelerate launch --cpu --num_processes 2`` starts a single process in accelerate 1.x unless
an MPI host file is given; ``--multi_gpu`` (a torchrun launch) with the config's ``device="cpu"``
is what runs two CPU processes.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_trainer import BINARY, Discs, config

from convlora_lite.training import RunDir, end_distributed, fit

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from pathlib import Path
from test_trainer import BINARY, Discs, config
from convlora_lite.training import end_distributed, fit
cfg = config(Path({tmp!r}), "ddp", epochs=2, batch_size=1, device="cpu")
fit(cfg, spec=BINARY, datasets={{"train": Discs(6), "val": Discs(2, 1), "test": Discs(2, 2)}})
end_distributed()
"""


@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
                    reason="the accelerate launcher is not installed")
def test_two_cpu_processes_train_like_one_process_with_the_summed_batch(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)))
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MASTER_PORT": "29533"}
    result = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533", str(script)],
        capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = tmp_path / "ddp"
    assert RunDir(ddp).load_state()["world_size"] == 2
    assert json.loads((ddp / "metrics.json").read_text())["completed"]
    assert not [p for p in ddp.rglob(".*tmp*")]  # atomic writes left no temporary file
    # one process with batch 2 sees the same pairs of images per step (the epoch permutation is
    # shared and split by rank), and DDP averages the two processes' gradients
    single = fit(config(tmp_path, "single", epochs=2, batch_size=2, device="cpu"), spec=BINARY,
                 datasets={"train": Discs(6), "val": Discs(2, 1), "test": Discs(2, 2)})
    a, b = (pd.read_csv(r / "history.csv").drop(columns=["time_s"]) for r in (ddp, single))
    pd.testing.assert_frame_equal(a, b, rtol=1e-4)
    wa, wb = load_file(ddp / "checkpoint/last.safetensors"), load_file(single / "checkpoint/last.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_end_distributed_destroys_the_process_group_once_and_is_a_no_op_without_one(tmp_path):
    end_distributed()  # no group: nothing to do
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    end_distributed()
    assert not torch.distributed.is_initialized()
    end_distributed()
