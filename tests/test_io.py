"""PyTorch files are read without Python's full unpickler: tensors, plain values and random states load; a file
that names code is refused with a clear error, and the code does not run."""
import argparse

import pytest
import torch

from convlora_lite.errors import CheckpointError
from convlora_lite.io import load_torch_file
from convlora_lite.models.checkpoints import load_mae_file
from convlora_lite.training.resume import rng_state
from convlora_lite.training.rundir import RunDir

RAN = []


def _mark(text):
    RAN.append(text)


class CarriesCode:
    """A pickle that calls a function when read (what a malicious checkpoint does)."""

    def __reduce__(self):
        return (_mark, ("the code ran",))


def test_a_resume_state_with_random_states_and_an_optimizer_round_trips(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    model(torch.randn(3, 2)).sum().backward()
    optimizer.step()
    state = {"rng": [rng_state()], "optimizer": optimizer.state_dict(), "history": [{"epoch": 1, "loss": 0.5}],
             "best": {"epoch": 1, "value": None}}
    run = RunDir(tmp_path / "run")
    run.save_state(state)
    loaded = run.load_state()
    assert (loaded["rng"][0]["numpy"][1] == state["rng"][0]["numpy"][1]).all()
    assert torch.equal(loaded["rng"][0]["torch"], state["rng"][0]["torch"])
    assert loaded["history"] == state["history"] and loaded["optimizer"]["param_groups"][0]["fused"] is True


def test_a_file_that_carries_code_is_refused_and_the_code_does_not_run(tmp_path):
    RAN.clear()
    run = RunDir(tmp_path / "run")
    run.save_state({"weights": {}, "payload": CarriesCode()})
    with pytest.raises(CheckpointError, match=r"the resume state of .*was not loaded: reading them could run code"):
        run.load_state()
    mae = tmp_path / "mae.pth"
    torch.save({"model": {}, "args": CarriesCode()}, mae)
    with pytest.raises(CheckpointError, match="_mark"):
        load_mae_file(mae)
    assert RAN == []
    torch.save({"model": {"w": torch.ones(1)}}, mae)  # the same file without the payload reads
    assert load_torch_file(mae, "an MAE checkpoint")["model"]["w"].item() == 1.0


def test_an_mae_checkpoint_with_its_training_arguments_loads(tmp_path):
    path = tmp_path / "mae.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3, model="mae_vit_base")}, path)
    state = load_mae_file(path)
    assert state["args"].lr == 1e-3 and torch.equal(state["model"]["w"], torch.ones(2))
