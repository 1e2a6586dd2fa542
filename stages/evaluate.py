"""evaluate: data/models/<model>.pt + test features → metrics/<model>.json and reports.

    python -m stages.evaluate lstm

Runs on the CPU whatever device trained the model, so its numbers are the same everywhere
the weights are.
"""
import argparse
import pickle
import sys
import warnings

import torch
import torch.nn.functional as F

from stages.batches import input_mode, load_inputs, predict_logits
from stages.errors import PipelineError, run_stage
from stages.files import load_meta, read_parquet, require
from stages.model import build
from stages.paths import SPLIT_TEST, metrics, weights
from stages.scoring import write_scores

def load_model(name):
    """The trained model ``name``, on the CPU, in eval mode.  Never unpickles code."""
    path = require(weights(name))
    try:
        with warnings.catch_warnings():
            # torch warns about a foreign pickle protocol before refusing the file; the
            # error below says all the user needs.
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = build(checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code.
        raise PipelineError(f"{path} was refused: it holds something other than tensors and "
                            "plain data, so this pipeline did not write it (weights load with "
                            "weights_only=True, which never runs code from the file); delete it "
                            "and rerun `dvc repro`, or `dvc pull` from a trusted remote") from None
    except Exception as exc:  # a truncated file, a mismatched config
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path} is not a loadable checkpoint ({reason}); "
                            "rerun `dvc repro` or `dvc pull`") from None
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
