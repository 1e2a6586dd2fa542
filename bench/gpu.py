"""Time training epochs per model on a GPU, in float32 and with bf16 autocast, and score them.

    python -m bench.gpu                         # CUDA; needs data/features (dvc repro vectorize)
    python -m bench.gpu --models rnn_seq lstm_seq gru_seq   # after dvc repro sequence/dvc.yaml:sequences
    python -m bench.gpu --device cpu --epochs 2  # the same measurement on the CPU
    python -m bench.gpu --models gru_seq --seeds 1 2   # other train.seed values: the spread

Runs the train stage's own loop (stages.train.train: model, batches, optimizer, each model's
training settings from params.yaml) with ``--epochs`` epochs per model and precision (default:
the model's own epochs), then scores the test split; no files are written.  On CUDA the
sequence models read packed sequences (cuDNN skips the padding).  The first epoch includes
CUDA's warm-up (kernel selection, allocator), so the table gives it apart from the median of the
others.  Prints one Markdown table (and writes it to --output).
"""
import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

from stages import devices, distributed, params
from stages.batches import load_inputs, predict_logits
from stages.model import build
from stages.train import train


def test_accuracy(checkpoint, device):
    model = build(checkpoint["config"]).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    features, labels = load_inputs(checkpoint["config"].get("input", "bow"), "test")
    logits = predict_logits(model, features, device).float().cpu()
    return (logits.argmax(1).numpy() == labels).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--epochs", type=int, help="epochs per row (default: each model's own)")
    parser.add_argument("--models", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="train.seed values, one row each (default: params.yaml's): the spread "
                             "between seeds is the yardstick for a CPU/GPU difference")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 2:
        sys.exit("bench.gpu: --epochs must be at least 2 (the first is warm-up)")
    device = devices.choose(args.device)
    group = distributed.Group(device=device)
    on_cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_cuda else "CPU"
    lines = [f"{name}, torch {torch.__version__}", "",
             "| model | seed | precision | epochs | epoch 1, s | later epochs (median), s | total, s "
             "| test accuracy | peak GPU memory, MB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for model in args.models:
        settings = dict(params.training_params(model), device=args.device, nproc=1,
                        validation_fraction=0.0, patience=0)
        if args.epochs:
            settings["epochs"] = args.epochs
        for seed, bf16 in itertools.product(args.seeds or [settings["seed"]],
                                            (False, True) if on_cuda else (False,)):
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
            checkpoint, _, _, seconds = train(model, dict(settings, seed=seed, bf16=bf16),
                                              params.model_params(model), group)
            memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if on_cuda else "–"
            later = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
            lines.append(f"| {model} | {seed} | {'bf16' if bf16 else 'float32'} | {len(seconds)} | "
                         f"{seconds[0]:.2f} | {later:.2f} | {sum(seconds):.1f} | "
                         f"{test_accuracy(checkpoint, device):.4f} | {memory} |")
            print(lines[-1], file=sys.stderr, flush=True)
    options = f" --epochs {args.epochs}" if args.epochs else ""
    options += f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else ""
    report = ("\n".join(lines) + f"\n\n`python -m bench.gpu --device {args.device}{options} "
              f"--models {' '.join(args.models)}`\n")
    if args.output:
        args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
