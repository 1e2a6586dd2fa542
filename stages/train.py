"""train: data/features → data/models/<model>.pt and its per-epoch log, for one model.

    python -m stages.train lstm

Reads ``train`` (shared settings) and ``models.<model>`` from params.yaml.  The loop is
deliberately plain: shuffle, forward, loss, backward, step; one line per epoch on stderr.
With ``train.nproc > 1`` (or under torchrun) it is data-parallel: see stages/distributed.py.
"""
import argparse
import math
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from stages import devices, distributed, params, steps
from stages.batches import load_inputs, make_batches, predict_logits
from stages.errors import PipelineError, run_stage
from stages.files import load_meta, load_sequence_vocabulary, save_weights, write_csv, write_json
from stages.model import RecurrentClassifier, build
from stages.paths import FEATURES, timings, train_log, weights
from stages.progress import Progress
from stages.ragged import Ragged


def make_optimizer(model, p, group):
    """``train.optimizer``: the seed's Adam, or lazy_adam, which steps only the input rows each
    batch touches (optim.LazyAdam).  A model trained on the CPU by one process gets
    stages/optim.py's, and hands it its input matrix's gradient (the bag of words' input
    weights, a sequence model's embedding) as the sparse rows each batch touches: the
    backward pass then costs the words a batch holds, not the vocabulary.  Every other case
    gets torch's fused Adam on dense gradients (DistributedDataParallel all-reduces dense
    gradients; CUDA's backward passes are fast as they are), where a lazy step would have no
    sparse gradient to act on: lazy_adam is refused there."""
    sparse_path = group.device.type == "cpu" and group.world_size == 1
    if p["optimizer"] == "lazy_adam":
        if not sparse_path:
            raise PipelineError("params.yaml: train.optimizer lazy_adam is for models trained on "
                                f"the CPU by one process, not on {group.device} in "
                                f"{group.world_size} processes; use adam")
        if p["weight_decay"]:
            raise PipelineError("params.yaml: train.optimizer lazy_adam takes no weight decay (it "
                                "would decay only the rows a batch touches); set weight_decay: 0")
    if sparse_path:
        from stages import optim  # numba and its kernels: a second and ~80 MB the others never use

        if isinstance(model, RecurrentClassifier):
            model.sparse_input_grad = True
        else:
            model.embedding.sparse = True
        if p["optimizer"] == "lazy_adam":
            return optim.LazyAdam(model.parameters(), lr=p["lr"])
        return optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"],
                            fused=True)


def validation_split(count, fraction, seed):
    """(train rows, validation rows) of the train split: a seeded random slice, or none."""
    if not fraction:
        return np.arange(count), None
    held_out = max(1, round(count * fraction))
    if held_out >= count:
        raise PipelineError(f"params.yaml: train.validation_fraction={fraction} leaves no "
                            f"training document out of {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def take(features, rows):
    return features.take(rows) if isinstance(features, Ragged) else features[rows]


class EarlyStopping:
    """Scores a held-out slice after every epoch and keeps the best weights: highest
    validation accuracy, then lowest loss.  ``stop`` turns true after ``patience`` epochs
    without improvement (never when patience is 0)."""

    def __init__(self, features, labels, patience):
        self.features, self.labels = features, torch.from_numpy(labels)
        self.patience, self.stale = patience, 0
        self.best = self.best_epoch = self.best_state = None

    def update(self, epoch, model, device):
        """Score ``model``; return (val_loss, val_accuracy, improved)."""
        logits = predict_logits(model, self.features, device).float().cpu()
        loss = round(F.cross_entropy(logits, self.labels).item(), 6)
        accuracy = round((logits.argmax(1) == self.labels).float().mean().item(), 6)
        improved = self.best is None or (accuracy, -loss) > self.best
        if improved:
            self.best, self.best_epoch = (accuracy, -loss), epoch
            self.best_state = None  # freed first: two copies of a large model need not fit
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.stale = 0 if improved else self.stale + 1
        return loss, accuracy, improved

    @property
    def stop(self):
        return bool(self.patience) and self.stale >= self.patience


def epoch_batches(batches, generator, group):
    """This process's batches for one epoch.  The order is a fresh ``torch.randperm`` (as
    DataLoader(shuffle=True)), of which each process takes every world_size-th document;
    the batches then cut it as they cut an epoch (token sequences length-bucketed, CSR rows
    in that order: ``epoch_plan`` in stages/batches.py).  With several processes the order
    is first cut to a multiple of world_size (as DistributedSampler(drop_last=True)): every
    process then takes the same number of steps, and none waits for a missing all-reduce."""
    order = torch.randperm(len(batches.labels), generator=generator).numpy()
    order = order[:len(order) - len(order) % group.world_size]
    return batches.epoch_plan(order[group.rank::group.world_size], generator)


def steps_per_epoch(count, batch_size, world_size):
    """Optimizer steps one process takes in an epoch of ``count`` documents: its
    ``count // world_size`` documents in batches of ``batch_size`` (already divided by
    world_size)."""
    return -(-(count // world_size) // batch_size)


def train(name, p, model_p, group):
    """Train model ``name`` with the settings ``p`` (the train section with the model's own
    overrides); return (checkpoint dict, log header, per-epoch log rows, seconds of each
    epoch).  The log holds only what a rerun reproduces; the seconds go elsewhere."""
    device = group.device
    torch.manual_seed(p["seed"])
    features, labels = load_inputs(model_p["input"], "train")
    meta = load_meta()
    vocab_size = meta["n_features"]
    if isinstance(features, Ragged):
        vocab_size = len(load_sequence_vocabulary())
        features.check(f"train sequences of {name}", vocab_size=vocab_size)
    architecture = {k: v for k, v in model_p.items() if k not in params.TRAINING_OVERRIDES}
    config = dict(architecture, vocab_size=vocab_size, num_classes=len(meta["classes"]))
    model = build(config, name).to(device)
    if model_p["input"] == "sequence" and device.type == "cpu":
        # Backpropagating through hundreds of steps makes gradients tiny: denormal floats,
        # which the CPU computes several times more slowly.  Flushing them to zero avoids that.
        torch.set_flush_denormal(True)
    if device.type == "cpu":
        devices.keep_freed_memory()
    optimizer = make_optimizer(model, p, group)
    train_rows, validation_rows = validation_split(len(labels), p["validation_fraction"], p["seed"])
    early = None
    if validation_rows is not None:
        early = EarlyStopping(take(features, validation_rows), labels[validation_rows], p["patience"])
        features, labels = take(features, train_rows), labels[train_rows]
    batches = make_batches(model, features, labels, p["batch_size"] // group.world_size, device)
    forward = model
    if group.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    shuffle = torch.Generator().manual_seed(p["seed"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if p["bf16"] and device.type == "cuda"
                else nullcontext())
    header = ["epoch", "loss", "accuracy"] + (["val_loss", "val_accuracy"] if early else [])
    log, epoch_seconds = [], []
    epochs = p["epochs"]
    epoch_steps = steps_per_epoch(len(labels), batches.batch_size, group.world_size)
    trained = len(labels) - len(labels) % group.world_size  # documents an epoch reads
    schedule = steps.LearningRate(optimizer, p, total_steps=epochs * epoch_steps)
    averaged = None  # train.swa_start: the running mean of the weights after each epoch
    for epoch in range(1, epochs + 1):
        model.train()
        started = time.perf_counter()
        loss_sum, correct = 0.0, torch.zeros((), device=device, dtype=torch.long)
        epoch_plan = epoch_batches(batches, shuffle, group)
        progress = Progress(epoch_steps, f"train {name}: epoch {epoch}/{epochs}",
                            enabled=group.is_main)
        for batch, (inputs, targets) in enumerate(batches.iterate(epoch_plan), start=1):
            with autocast:
                logits = forward(*inputs)
            loss = F.cross_entropy(logits.float(), targets)
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise PipelineError(f"train {name}: loss became {batch_loss} at epoch {epoch}, "
                                    f"batch {batch}; lower the learning rate (train.lr or "
                                    f"models.{name}.lr) or check {FEATURES['train']}")
            optimizer.zero_grad()
            loss.backward()
            if p["grad_clip"]:
                steps.clip_gradients(model.parameters(), p["grad_clip"])
            schedule.step()
            optimizer.step()
            loss_sum += batch_loss * len(targets)
            correct += (logits.argmax(1) == targets).sum()
            progress.update()
        progress.close()
        if device.type == "cpu":
            devices.release_freed_memory()
        epoch_loss = distributed.total(torch.tensor(loss_sum, device=device), group).item()
        epoch_correct = distributed.total(correct, group).item()
        seconds = time.perf_counter() - started
        epoch_seconds.append(round(seconds, 3))
        row = (epoch, epoch_loss / trained, epoch_correct / trained)
        line = (f"train {name}: epoch {epoch}/{epochs} loss {row[1]:.4f} "
                f"accuracy {row[2]:.4f} ({seconds:.1f} s)")
        if p["swa_start"] and epoch >= p["swa_start"]:
            if averaged is None:
                averaged = steps.average_of(model)
            averaged.update_parameters(model)
        if early:
            scored = model if averaged is None else averaged.module
            val_loss, val_accuracy, improved = early.update(epoch, scored, device)
            row += (val_loss, val_accuracy)
            line += f" val loss {val_loss:.4f} accuracy {val_accuracy:.4f}{' *' if improved else ''}"
        log.append(row)
        if group.is_main:
            print(line, file=sys.stderr, flush=True)
        if early and early.stop:
            print(f"train {name}: no better validation score for {early.stale} epochs; stopping",
                  file=sys.stderr)
            break
    checkpoint = {"device": str(device), "torch_version": str(torch.__version__),
                  "processes": group.world_size}
    if early:
        model.load_state_dict(early.best_state)
        checkpoint["best_epoch"] = early.best_epoch
        mean = (f", the mean of epochs {p['swa_start']}-{early.best_epoch}"
                if averaged is not None and early.best_epoch >= p["swa_start"] else "")
        print(f"train {name}: keeping epoch {early.best_epoch}{mean} (validation accuracy "
              f"{early.best[0]:.4f}, loss {-early.best[1]:.4f})", file=sys.stderr)
    elif averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
        print(f"train {name}: keeping the mean of epochs {p['swa_start']}-{len(log)}",
              file=sys.stderr)
    checkpoint.update(config=config, state_dict=model.state_dict())
    print(f"train {name}: {sum(epoch_seconds):.1f} s in {len(epoch_seconds)} epochs",
          file=sys.stderr)
    return checkpoint, header, log, epoch_seconds


def peak_rss_mb():
    """This process's peak resident memory in MB (Linux and macOS), else None."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model name from the models section of params.yaml")
    args = parser.parse_args(argv)
    p = params.training_params(args.model)
    model_p = params.model_params(args.model)
    device = devices.choose(p["device"])
    if p["nproc"] > 1 and not distributed.under_torchrun():
        sys.exit(distributed.relaunch(p["nproc"], argv))
    if p["bf16"] and device.type != "cuda":
        print(f"train {args.model}: bf16 applies to CUDA only; training in float32 on {device}",
              file=sys.stderr)
    group = distributed.Group(device=device)
    if distributed.under_torchrun():
        group = distributed.join(device, p["batch_size"])
    try:
        checkpoint, header, log, epoch_seconds = train(args.model, p, model_p, group)
    finally:
        distributed.leave()
    rss = peak_rss_mb()
    if group.is_main:  # the other processes hold the same weights
        save_weights(weights(args.model), checkpoint)
        write_csv(train_log(args.model), header, log)
        # Wall-clock figures differ from run to run: kept out of git and of DVC's hashes.
        write_json(timings(args.model), {"epoch_seconds": epoch_seconds,
                                         "train_seconds": round(sum(epoch_seconds), 3),
                                         "peak_rss_mb": None if rss is None else round(rss)})
    if rss is not None:
        print(f"train {args.model} (process {group.rank}): peak RSS {rss:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
