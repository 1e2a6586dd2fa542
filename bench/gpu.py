"""Time training epochs per model on a GPU, in float32 and with bf16 autocast.

    python -m bench.gpu                         # CUDA; needs data/features (dvc repro vectorize)
    python -m bench.gpu --device cpu --epochs 2  # the same measurement on the CPU
    python -m bench.gpu --models lstm_seq gru_seq  # after dvc repro sequence/dvc.yaml:sequences

Runs the train stage's own loop (stages.train.train: model, batches, optimizer) with the
committed params.yaml, ``--epochs`` epochs per model and precision, no files written.  The
first epoch includes CUDA's warm-up (kernel selection, allocator), so the table gives it apart
from the median of the others.  Prints one Markdown table (and writes it to --output).
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

from stages import devices, distributed, params
from stages.train import train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.epochs < 2:
        sys.exit("bench.gpu: --epochs must be at least 2 (the first is warm-up)")
    device = devices.choose(args.device)
    group = distributed.Group(device=device)
    settings = dict(params.load("train"), device=args.device, nproc=1, epochs=args.epochs,
                    validation_fraction=0.0, patience=0)
    on_cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_cuda else "CPU"
    lines = [f"{name}, torch {torch.__version__}, {args.epochs} epochs per row", "",
             "| model | precision | epoch 1, s | later epochs (median), s | peak GPU memory, MB |",
             "|---|---|---:|---:|---:|"]
    for model in args.models:
        for bf16 in (False, True) if on_cuda else (False,):
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
            model_settings = dict(params.model_params(model), epochs=None)
            *_, seconds = train(model, dict(settings, bf16=bf16), model_settings, group)
            memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if on_cuda else "–"
            lines.append(f"| {model} | {'bf16' if bf16 else 'float32'} | {seconds[0]:.2f} | "
                         f"{statistics.median(seconds[1:]):.2f} | {memory} |")
    report = "\n".join(lines) + f"\n\n`python -m bench.gpu --device {args.device} --epochs {args.epochs}`\n"
    if args.output:
        args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
