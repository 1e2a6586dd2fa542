"""Data-parallel training: train.nproc: 2 runs the train stage under torchrun (Gloo on the
CPU) and gives what one process gives, written once."""
import json

import pytest
import torch

SHARED_DOCS = "every process shuffles the same order and takes every 2nd document"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_archive):
    from conftest import Project

    single = Project(tmp_path_factory.mktemp("single") / "repo", tiny_archive)
    single.dvc("repro", "evaluate@lstm")
    double = Project(tmp_path_factory.mktemp("double") / "repo", tiny_archive)
    double.edit_params("train.nproc", 2)
    result = double.dvc("repro", "evaluate@lstm")
    return single, double, result


def test_two_processes_train_what_one_does(runs):
    single, double, _ = runs
    one = json.loads((single.path / "metrics/lstm.json").read_text())
    two = json.loads((double.path / "metrics/lstm.json").read_text())
    # Same global batches (each process takes half of each), so the same training up to the
    # order of floating-point sums: identical predictions, weights within 1e-4.
    assert two["accuracy"] == one["accuracy"], SHARED_DOCS
    one_loss, two_loss = (json.loads((p.path / "metrics/classes/lstm.json").read_text())["test_loss"]
                          for p in (single, double))
    assert two_loss == pytest.approx(one_loss, abs=1e-3)
    a = torch.load(single.path / "data/models/lstm.pt", weights_only=True)
    b = torch.load(double.path / "data/models/lstm.pt", weights_only=True)
    assert (a["processes"], b["processes"]) == (1, 2)
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, atol=1e-4, rtol=0)


def test_only_one_copy_of_each_output_is_written(runs):
    _, double, result = runs
    models = sorted(p.name for p in (double.path / "data/models").iterdir())
    assert models == [".gitignore", "lstm.pt"]  # no copy per process, no temporary file
    assert sorted(p.name for p in (double.path / "metrics/train").iterdir()) == ["lstm.csv"]
    log = (double.path / "metrics/train/lstm.csv").read_text().splitlines()
    assert len(log) == 1 + 10  # one header, one row per epoch: not one set per process
    epoch_lines = [line for line in result.stderr.splitlines() if "train lstm: epoch" in line]
    assert len(epoch_lines) == 10  # only process 0 reports


def test_two_processes_are_deterministic(runs):
    _, double, _ = runs
    before = (double.path / "metrics/lstm.json").read_bytes()
    double.dvc("repro", "--force", "--single-item", "train@lstm", "evaluate@lstm")
    assert (double.path / "metrics/lstm.json").read_bytes() == before


@pytest.mark.parametrize("count", [7, 129, 130])
@pytest.mark.parametrize("kind", ["csr", "sequence"])
def test_every_process_takes_the_same_number_of_disjoint_batches(kind, count):
    # A process with one batch more than the others would wait in its gradient all-reduce
    # until the backend's timeout; the step count is also what the cosine schedule spans.
    import numpy as np
    import scipy.sparse

    from stages.batches import CsrBatches, SequenceBatches
    from stages.distributed import Group
    from stages.ragged import Ragged
    from stages.train import epoch_batches, steps_per_epoch

    world_size, batch_size, cpu = 2, 64 // 2, torch.device("cpu")
    rng = np.random.default_rng(count)
    if kind == "csr":
        batches = CsrBatches(scipy.sparse.random(count, 10, density=0.3, format="csr", random_state=0),
                             np.zeros(count), batch_size, cpu)
    else:
        rows = [rng.integers(0, 9, rng.integers(1, 20)) for _ in range(count)]
        batches = SequenceBatches(Ragged.from_rows(rows), np.zeros(count), batch_size, cpu,
                                  max_length=16, pad_index=9)
    taken = []
    for rank in range(world_size):
        plan = epoch_batches(batches, torch.Generator().manual_seed(0), Group(rank, world_size))
        if kind == "csr":
            plan = [plan[i:i + batch_size] for i in range(0, len(plan), batch_size)]
        assert len(plan) == steps_per_epoch(count, batch_size, world_size)
        taken.append(np.concatenate(plan))
    everything = np.concatenate(taken)
    assert len(everything) == count - count % world_size
    assert len(np.unique(everything)) == len(everything)
