"""Shared test set-up: one thread (CI has 2 cores), deterministic seeds."""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
