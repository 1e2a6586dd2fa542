"""train: data/features → data/models/<model>.pt and its per-epoch log, for one model.

    python -m stages.train lstm

Reads ``train`` (shared settings) and ``models.<model>`` from params.yaml.  The loop is
deliberately plain: shuffle, forward, loss, backward, step; one line per epoch on stderr.
"""
import argparse
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from stages import devices, params
from stages.batches import CsrBatches
from stages.errors import PipelineError, run_stage
from stages.files import load_features, load_meta, save_weights, write_csv
from stages.model import RecurrentClassifier
from stages.paths import FEATURES, train_log, weights


def make_optimizers(model, p):
    """The seed's Adam, fused (one kernel for all tensors: several times faster on CPU).

    ``lazy_adam`` updates only the vocabulary rows a batch touches (SparseAdam on the input
    matrix): faster still, but not the seed's math, since untouched rows keep stale moments.
    """
    if p["optimizer"] == "adam":
        return [torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"],
                                 fused=True)]
    dense = [param for name, param in model.named_parameters() if name != "input_weight"]
    return [torch.optim.SparseAdam([model.input_weight], lr=p["lr"]),
            torch.optim.Adam(dense, lr=p["lr"], weight_decay=p["weight_decay"], fused=True)]


def train(name, p, model_p, device):
    """Train model ``name``; return (checkpoint dict, per-epoch log rows)."""
    torch.manual_seed(p["seed"])
    matrix, labels = load_features("train")
    meta = load_meta()
    config = dict(model_p, vocab_size=matrix.shape[1], num_classes=len(meta["classes"]))
    model = RecurrentClassifier(config["cell"], config["vocab_size"], config["num_classes"],
                                hidden_size=config["hidden_size"], num_layers=config["num_layers"],
                                dropout=config["dropout"], bidirectional=config["bidirectional"],
                                sparse_input_grad=p["optimizer"] == "lazy_adam").to(device)
    optimizers = make_optimizers(model, p)
    batches = CsrBatches(matrix, labels, p["batch_size"], device)
    shuffle = torch.Generator().manual_seed(p["seed"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if p["bf16"] and device.type == "cuda"
                else nullcontext())
    log = []
    for epoch in range(1, p["epochs"] + 1):
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for batch, (inputs, targets) in enumerate(batches.shuffled(shuffle), start=1):
            with autocast:
                logits = model(*inputs)
            loss = F.cross_entropy(logits.float(), targets)
            if not torch.isfinite(loss):
                raise PipelineError(f"train {name}: loss became {loss.item()} at epoch {epoch}, "
                                    f"batch {batch}; lower train.lr or check {FEATURES['train']}")
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            loss_sum += loss.detach() * len(targets)
            correct += (logits.argmax(1) == targets).sum()
        seconds = time.perf_counter() - started
        row = (epoch, loss_sum.item() / len(labels), correct.item() / len(labels), round(seconds, 3))
        log.append(row)
        print(f"train {name}: epoch {epoch}/{p['epochs']} loss {row[1]:.4f} "
              f"accuracy {row[2]:.4f} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    checkpoint = {"config": config, "state_dict": model.state_dict(), "device": str(device),
                  "torch_version": str(torch.__version__)}
    return checkpoint, log


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model name from the models section of params.yaml")
    args = parser.parse_args(argv)
    p = params.load("train")
    model_p = params.model_params(args.model)
    device = devices.choose(p["device"])
    if p["bf16"] and device.type != "cuda":
        print(f"train {args.model}: bf16 applies to CUDA only; training in float32 on {device}",
              file=sys.stderr)
    checkpoint, log = train(args.model, p, model_p, device)
    save_weights(weights(args.model), checkpoint)
    write_csv(train_log(args.model), ["epoch", "loss", "accuracy", "seconds"], log)


if __name__ == "__main__":
    run_stage(main)
