"""evaluate: data/models/<model>.pt + test features → metrics/<model>.json and reports.

    python -m stages.evaluate lstm

Runs on the CPU whatever device trained the model, so its numbers are the same everywhere
the weights are.
"""
import argparse
import sys

import torch
import torch.nn.functional as F

from stages.batches import input_mode, load_inputs, predict_logits
from stages.errors import run_stage
from stages.files import REPRO, load_meta, load_weights, read_parquet, reading
from stages.model import build
from stages.paths import SPLIT_TEST, metrics, weights
from stages.scoring import write_scores


def load_model(name, rebuild=REPRO):
    """The trained model ``name``, on the CPU, in eval mode.  Never unpickles code.

    ``rebuild``: the command that trains it, for the error when it is missing or broken.
    """
    path = weights(name)
    checkpoint = load_weights(path, rebuild)
    with reading(path, "checkpoint of this pipeline's models", rebuild):  # e.g. a mismatched config
        model = build(checkpoint["config"], name)
        model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model name from the models section of params.yaml")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    features, labels = load_inputs(input_mode(model), "test")
    logits = predict_logits(model, features)
    targets = torch.from_numpy(labels)
    scores = write_scores(args.model, load_meta()["classes"], read_parquet(SPLIT_TEST, ["id"])["id"].to_pylist(),
                           labels, logits.argmax(1).numpy(),
                           parameters=sum(p.numel() for p in model.parameters()),
                           test_loss=F.cross_entropy(logits, targets).item())
    print(f"evaluate {args.model}: accuracy {scores['accuracy']:.4f} → {metrics(args.model)}",
          file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
