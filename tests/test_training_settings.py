"""Per-model training settings (models.<name>.* overriding train.*), the learning-rate
schedule, gradient clipping, weight averaging, length-bucketed batches, the progress lines and the CPU
allocator setting."""
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages import model, params, steps
from stages.batches import SequenceBatches
from stages.errors import PipelineError
from stages.progress import Progress
from stages.ragged import Ragged
from test_faults import outputs, refused

ROOT = Path(__file__).resolve().parents[1]


def settings_with(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_a_models_own_settings_override_the_train_section(tmp_path):
    path = settings_with(tmp_path, "train: {lr: 0.001, batch_size: 64, epochs: 10}\n"
                                   "models:\n  fast: {lr: 0.004, grad_clip: 1.0, schedule: cosine}\n"
                                   "  plain: {}\n")
    fast, plain = params.training_params("fast", path), params.training_params("plain", path)
    assert (fast["lr"], fast["grad_clip"], fast["schedule"], fast["batch_size"]) == (0.004, 1.0, "cosine", 64)
    assert (plain["lr"], plain["grad_clip"], plain["schedule"]) == (0.001, 0.0, "constant")
    assert plain == params.load("train", path)


# (key, value, words the one-line error must contain): overrides are checked as train.* is.
BAD_OVERRIDES = [
    ("models.lstm_seq.lr", 0, ["models.lstm_seq.lr must be in (0.0, inf], got 0"]),
    ("models.lstm_seq.batch_size", 12.5, ["models.lstm_seq.batch_size must be an integer"]),
    ("models.gru_seq.schedule", "linear", ["models.gru_seq.schedule must be one of constant, cosine"]),
    ("models.rnn_seq.grad_clip", -1, ["models.rnn_seq.grad_clip must be in [0.0, inf], got -1"]),
    ("models.rnn_seq.warmup", 1.0, ["models.rnn_seq.warmup must be in [0.0, 1.0), got 1.0"]),
    ("models.lstm.epochs", 0, ["models.lstm.epochs must be >= 1, got 0"]),
    ("models.rnn.swa_start", -1, ["models.rnn.swa_start must be >= 0, got -1"]),
]


@pytest.mark.parametrize("key, value, needles", BAD_OVERRIDES, ids=[f"{k}={v}" for k, v, _ in BAD_OVERRIDES])
def test_bad_override_is_a_one_line_error_before_any_work(project, key, value, needles):
    project.edit_params(key, value)
    refused(project.stage("fetch", check=False), "params.yaml", *needles)
    assert outputs(project) == []


def test_cosine_schedule_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = steps.LearningRate(optimizer, {"lr": 0.4, "schedule": "cosine", "warmup": 0.1},
                                  total_steps=100)
    rates = []
    for _ in range(100):
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.04) and rates[9] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # never rises after warm-up
    assert rates[-1] < 0.001 and rates[54] == pytest.approx(0.2, rel=0.05)


def test_constant_schedule_leaves_the_learning_rate_alone():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)
    schedule = steps.LearningRate(optimizer, {"lr": 0.003, "schedule": "constant", "warmup": 0.5}, 10)
    for _ in range(10):
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == 0.25


def test_clipping_bounds_the_global_norm_of_dense_and_sparse_gradients():
    dense = torch.zeros(3, requires_grad=True)
    dense.grad = torch.tensor([3.0, 0.0, 0.0])
    sparse = torch.zeros(5, 2, requires_grad=True)
    sparse.grad = torch.sparse_coo_tensor([[1, 4]], [[0.0, 4.0], [0.0, 0.0]], (5, 2),
                                          check_invariants=False).coalesce()
    assert steps.clip_gradients([dense, sparse], 1.0) == pytest.approx(5.0)
    total = math.hypot(dense.grad.norm().item(), sparse.grad._values().norm().item())
    assert total == pytest.approx(1.0, rel=1e-5)
    assert dense.grad.tolist() == pytest.approx([0.6, 0.0, 0.0])
    # Under the limit nothing changes.
    assert steps.clip_gradients([dense], 10.0) == pytest.approx(0.6)
    assert dense.grad.tolist() == pytest.approx([0.6, 0.0, 0.0])


def test_clipping_coalesces_repeated_rows_and_leaves_unique_ones_in_place():
    # An embedding's sparse gradient repeats row 1: its norm is that of the summed row (5),
    # not of the separate entries.  The bag-of-words input's gradient has each row once, in
    # order (autograd drops the coalesced flag): it is clipped where it is, not copied.
    embedding = torch.zeros(5, 2, requires_grad=True)
    embedding.grad = torch.sparse_coo_tensor([[1, 3, 1]], [[3.0, 0.0], [0.0, 0.0], [0.0, 4.0]],
                                             (5, 2), check_invariants=False)
    assert steps.clip_gradients([embedding], 10.0) == pytest.approx(5.0)
    assert embedding.grad.is_coalesced()

    weights = torch.zeros(100, 3, requires_grad=True)
    out = model.csr_times_weight(torch.tensor([7, 2, 7, 50]), torch.tensor([0, 2]),
                                 torch.tensor([1.0, 2.0, 3.0, 4.0]), weights, sparse_grad=True)
    out.sum().backward()
    gradient = weights.grad
    assert not gradient.is_coalesced()  # what autograd hands over
    expected = gradient.coalesce()._values().norm().item()
    assert steps.clip_gradients([weights], expected / 2) == pytest.approx(expected)
    assert weights.grad is gradient
    assert gradient.coalesce()._values().norm().item() == pytest.approx(expected / 2, rel=1e-5)


def bucketed_batches(seed, count=1000, batch_size=16):
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 50, size=rng.integers(0, 300)) for _ in range(count)]
    batches = SequenceBatches(Ragged.from_rows(rows), np.zeros(count), batch_size,
                              torch.device("cpu"), max_length=200, pad_index=50)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator).numpy()
    return batches, batches.epoch_plan(order, generator)


def test_bucketing_yields_every_row_once_in_batches_of_similar_length():
    batches, plan = bucketed_batches(seed=0)
    rows = np.concatenate(plan)
    assert sorted(rows.tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in plan) and len(plan) == len(batches)
    padded = sum(batches.lengths[b].max() * len(b) for b in plan)
    assert padded < 1.1 * batches.lengths.sum()  # shuffled batches pad ~1.5x here
    # Each batch is padded to its own longest row only.
    (ids, lengths), _ = next(batches.iterate(plan[:1]))
    assert ids.shape[1] == max(int(lengths.max()), 1)


def test_bucketing_is_seeded_and_shuffles_the_batch_order():
    _, first = bucketed_batches(seed=0)
    _, again = bucketed_batches(seed=0)
    _, other = bucketed_batches(seed=1)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [b.tolist() for b in first] != [b.tolist() for b in other]
    batches, plan = bucketed_batches(seed=0)
    longest = [int(batches.lengths[b].max()) for b in plan]
    assert longest != sorted(longest)  # not one long run from short to long


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_rare_plain_lines_elsewhere(monkeypatch):
    clock = iter(range(0, 1000, 5))  # each update 5 "seconds" later
    monkeypatch.setattr("stages.progress.time.perf_counter", lambda: next(clock))
    log = io.StringIO()
    progress = Progress(20, "train x: epoch 1/1", interval=15.0, stream=log)
    for _ in range(20):
        progress.update()
    progress.close()
    lines = log.getvalue().splitlines()
    assert lines and len(lines) <= 20 * 5 // 15
    assert all(line.startswith("train x: epoch 1/1: ") and "batches" in line for line in lines)
    terminal = Terminal()
    bar = Progress(20, "train x", stream=terminal)
    for _ in range(20):
        bar.update()
    bar.close()
    drawn = terminal.getvalue()
    assert "train x:" in drawn and "/20 [" in drawn and "\n" not in drawn  # a bar, redrawn in place


def script_output(script, mode):
    """What ``script`` prints, run in a fresh Python process with ``mode`` as its argument."""
    return subprocess.run([sys.executable, "-c", script, mode], check=True, capture_output=True,
                          text=True, cwd=ROOT).stdout


FAULTS_PER_LSTM_STEP = """
import resource, sys
import torch
from stages import devices
if sys.argv[1] == "keep":
    assert devices.keep_freed_memory()
lstm = torch.nn.LSTM(128, 128, batch_first=True)
inputs = torch.randn(128, 100, 128)
def step():
    lstm(inputs)[0].sum().backward()
for _ in range(6):  # until the heap has grown to what a step needs
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_training_keeps_freed_memory_instead_of_faulting_it_back_in():
    # oneDNN's LSTM frees and reallocates its workspace at every call: by default that memory
    # goes back to the kernel and returns page by page (~15,000 faults a step); kept, almost
    # none.
    # Kept, the heap still grows now and then where freed blocks leave holes (a few thousand
    # faults in one run of twenty here): a quarter of the default's is a safe bound.
    default, kept = (int(script_output(FAULTS_PER_LSTM_STEP, mode)) for mode in ("default", "keep"))
    assert default > 10_000 and kept < default / 4


RSS_AFTER_FREEING = """
import sys
import torch
from stages import devices
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
assert devices.keep_freed_memory()
# Freed blocks with live ones between them: holes that trimming the heap's top cannot return.
blocks = [(torch.ones(2**18), torch.ones(16)) for _ in range(400)]  # 400 x 1 MB
kept = [small for _, small in blocks]
del blocks
before = rss_mb()
if sys.argv[1] == "release":
    assert devices.release_freed_memory()
print(before - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_releasing_freed_memory_returns_the_heaps_holes_to_the_kernel():
    kept, released = (float(script_output(RSS_AFTER_FREEING, mode)) for mode in ("keep", "release"))
    assert kept < 50 and released > 300


def test_cpu_training_releases_freed_memory_after_every_epoch(monkeypatch):
    from stages import distributed, train

    rng = np.random.default_rng(0)
    sequences = Ragged.from_rows([rng.integers(0, 30, size=rng.integers(1, 20)) for _ in range(40)])
    monkeypatch.setattr(train, "load_inputs", lambda mode, subset: (sequences, np.arange(40) % 2))
    monkeypatch.setattr(train, "load_meta", lambda: {"n_features": 30, "classes": ["a", "b"]})
    monkeypatch.setattr(train, "load_sequence_vocabulary", lambda: [f"w{i}" for i in range(30)])
    calls = []
    monkeypatch.setattr("stages.devices.release_freed_memory", lambda: calls.append(1))
    settings = dict(params.training_params("gru_seq"), epochs=3, batch_size=8, device="cpu",
                    validation_fraction=0.0)
    model = dict(params.model_params("gru_seq"), embedding_dim=4, hidden_size=4, max_length=10)
    *_, seconds = train.train("gru_seq", settings, model,
                              distributed.Group(device=torch.device("cpu")))
    assert len(seconds) == len(calls) == 3


def test_averaging_that_would_start_after_the_last_epoch_is_refused(project):
    project.edit_params("models.gru.swa_start", 11)
    refused(project.stage("train", "gru", check=False), "params.yaml",
            "swa_start 11 is past model gru's last epoch (10)")


def train_small_rnn(monkeypatch, **settings):
    """Train the rnn model (hidden 4) on a random 48 × 30 CSR matrix of 3 classes in-process;
    return (its checkpoint, the weights early stopping scored after each epoch)."""
    from scipy import sparse

    from stages import distributed, train

    features = sparse.random(48, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    monkeypatch.setattr(train, "load_inputs", lambda mode, subset: (features, np.arange(48) % 3))
    monkeypatch.setattr(train, "load_meta", lambda: {"n_features": 30, "classes": ["a", "b", "c"]})
    scored = []

    class Recording(train.EarlyStopping):
        def update(self, epoch, model, device):
            scored.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return super().update(epoch, model, device)

    monkeypatch.setattr(train, "EarlyStopping", Recording)
    p = dict(params.training_params("rnn"), batch_size=8, device="cpu", **settings)
    checkpoint, *_ = train.train("rnn", p, dict(params.model_params("rnn"), hidden_size=4),
                                 distributed.Group(device=torch.device("cpu")))
    return checkpoint, scored


def mean(states):
    return {key: sum(state[key] for state in states) / len(states) for key in states[0]}


def test_weight_averaging_keeps_the_mean_of_the_epochs_from_swa_start(monkeypatch):
    # A constant learning rate: n epochs' weights are those after the first n of a longer run.
    each = [train_small_rnn(monkeypatch, epochs=n)[0]["state_dict"] for n in (2, 3, 4)]
    averaged = train_small_rnn(monkeypatch, epochs=4, swa_start=2)[0]["state_dict"]
    torch.testing.assert_close(averaged, mean(each))
    assert not torch.allclose(averaged["input_weight"], each[-1]["input_weight"], atol=1e-4)


def test_early_stopping_scores_and_keeps_the_running_mean(monkeypatch):
    held_out = dict(epochs=4, validation_fraction=0.25)
    _, plain = train_small_rnn(monkeypatch, **held_out)
    kept, scored = train_small_rnn(monkeypatch, **held_out, swa_start=2)
    # Before swa_start the model itself, then the mean of the epochs from swa_start on.
    expected = [plain[0], plain[1], mean(plain[1:3]), mean(plain[1:4])]
    for got, want in zip(scored, expected, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(kept["state_dict"], scored[kept["best_epoch"] - 1])
