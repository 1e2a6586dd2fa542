"""One training epoch of lstm_seq against the plain PyTorch loop a tutorial would write.

    python -m bench.sequence                    # needs data/sequences (dvc repro sequence/dvc.yaml:sequences)
    python -m bench.sequence --epochs 2 --output bench/sequence.md

Both read the same token ids (data/sequences/train.npz, the first 200 of each document) and
have the same architecture: embedding 128 → one nn.LSTM layer of 128 → max pooling over the
words → linear, with no dropout (the plain loop has none; lstm_seq's 0.2 is a model parameter,
not a training setting; drawing its masks takes about a sixth of an epoch).  The plain loop
is the tutorial's: a Dataset of tensors, DataLoader(shuffle=True, batch_size=64) padding each
batch to its longest row, Adam(1e-3).  Ours is the train stage's own loop (stages.train.train)
with lstm_seq's training settings from params.yaml (batch size, learning rate, clipping,
schedule, length-bucketed batches).  They alternate, so
both share the machine's noise, each epoch in a fresh process; the table gives each epoch's
seconds and the ratio of medians.
"""
import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from stages import distributed, params
from stages.batches import load_inputs
from stages.files import load_meta, load_sequence_vocabulary
from stages.train import train

ARCHITECTURE = {"embedding_dim": 128, "hidden_size": 128, "num_layers": 1, "bidirectional": False,
                "max_length": 200, "pooling": "max", "cell": "lstm", "dropout": 0.0}


class PlainLSTM(nn.Module):
    def __init__(self, vocab_size, num_classes, pad_index):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, 128, padding_idx=pad_index)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.head = nn.Linear(128, num_classes)

    def forward(self, ids, lengths):
        outputs, _ = self.lstm(self.embedding(ids))
        padding = torch.arange(ids.shape[1])[None, :] >= lengths[:, None]
        return self.head(outputs.masked_fill(padding[..., None], float("-inf")).amax(1))


def plain_epochs(epochs, seed=0):
    """Seconds of each epoch of the tutorial loop."""
    sequences, labels = load_inputs("sequence", "train")
    meta = load_meta()
    pad_index = len(load_sequence_vocabulary())
    dataset = [(torch.from_numpy(sequences[i][:200].astype("int64")), int(labels[i]))
               for i in range(len(sequences))]

    def collate(batch):
        rows = [ids if len(ids) else torch.tensor([pad_index]) for ids, _ in batch]
        return (pad_sequence(rows, batch_first=True, padding_value=pad_index),
                torch.tensor([len(r) for r in rows]), torch.tensor([y for _, y in batch]))

    torch.manual_seed(seed)
    torch.set_flush_denormal(True)  # as ours does: compare the loops, not denormal arithmetic
    model = PlainLSTM(pad_index, len(meta["classes"]), pad_index)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, collate_fn=collate)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for ids, lengths, targets in loader:
            loss = F.cross_entropy(model(ids, lengths), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def our_epochs(epochs):
    """Seconds of each epoch of the train stage's loop for lstm_seq, with the plain loop's
    architecture."""
    settings = dict(params.training_params("lstm_seq"), epochs=epochs, validation_fraction=0.0,
                    patience=0, device="cpu", nproc=1)
    model_settings = dict(params.model_params("lstm_seq"), **ARCHITECTURE)
    *_, seconds = train("lstm_seq", settings, model_settings, distributed.Group(device=torch.device("cpu")))
    return seconds


def in_own_process(function, *args):
    """``function(*args)`` in a fresh Python process: the train stage tunes the process's
    allocator (devices.keep_freed_memory), which the tutorial loop must not inherit."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each loop (default 1)")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args()
    plain, ours = [], []
    for epoch in range(args.epochs):  # alternate, so that both see the same noise
        plain += in_own_process(plain_epochs, 1, epoch)
        print(f"bench.sequence: plain loop epoch {epoch + 1}: {plain[-1]:.1f} s", file=sys.stderr)
        ours += in_own_process(our_epochs, 1)
    p, o = statistics.median(plain), statistics.median(ours)
    batch = params.training_params("lstm_seq")["batch_size"]
    # PyTorch and oneDNN pick their kernels by instruction set (AVX2, AVX-512), and epoch
    # times differ with it from machine to machine: the header says which this run had.
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()}, {args.epochs} epoch(s) each",
             "", "| loop | batch | epoch seconds | median |", "|---|---:|---|---:|",
             f"| plain PyTorch (DataLoader, shuffled batches) | 64 | {', '.join(f'{s:.1f}' for s in plain)} | {p:.1f} |",
             f"| ours (stages.train, lstm_seq settings, bucketed) | {batch} | {', '.join(f'{s:.1f}' for s in ours)} | {o:.1f} |",
             "", f"ours / plain: **{o / p:.2f}**", "", f"`python -m bench.sequence --epochs {args.epochs}`"]
    report = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
