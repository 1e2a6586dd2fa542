"""predict: raw messages → the top-k newsgroups of a trained model, with probabilities.

    python -m stages.predict --model lstm message.txt other.txt
    python -m stages.predict --model gru_seq --json --top-k 5 < message.txt

Each FILE (``-`` or none: standard input) is one message, read like the corpus (latin-1, the
``fetch.remove`` parts of params.yaml removed).  Uses the pipeline's artifacts: the fitted
vectorizer, meta.json and data/models/<model>.pt, so it works after ``dvc repro`` or, on a
fresh clone, after ``dvc pull``.  Plain text by default; ``--json``: one JSON object per
message.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from stages import params
from stages.errors import PipelineError, run_stage
from stages.batches import input_mode, predict_logits
from stages.evaluate import load_model
from stages.fetch import strip
from stages.files import load_meta, load_vectorizer


def positive(value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def read_messages(names, remove):
    """[(display name, text)] for FILE arguments; ``-`` is standard input."""
    messages = []
    for name in names:
        if name == "-":
            if sys.stdin.isatty():
                print("predict: reading a message from standard input (end it with Ctrl-D)",
                      file=sys.stderr)
            raw, shown = sys.stdin.buffer.read(), "<stdin>"
        else:
            try:
                raw, shown = Path(name).read_bytes(), name
            except OSError as exc:
                raise PipelineError(f"cannot read {name}: {exc.strerror or exc}") from None
        text = strip(raw.decode("latin-1"), remove)
        if not text.strip():
            raise PipelineError(f"{shown} is empty{' once fetch.remove is applied' if remove else ''}"
                                "; give a message to classify")
        messages.append((shown, text))
    return messages


def features_for(model, vectorizer, texts):
    """The model's input for raw texts, and for each text whether it has a known word."""
    if input_mode(model) == "sequence":
        from stages.sequences import encode

        sequences = encode(vectorizer, texts)
        return sequences, sequences.lengths > 0
    matrix = vectorizer.transform(texts).astype(np.float32)
    return matrix, np.diff(matrix.indptr) > 0


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model name from the models section of params.yaml")
    parser.add_argument("--top-k", type=positive, default=3, help="how many newsgroups to show (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("files", nargs="*", metavar="FILE", help="messages; - or none: standard input")
    args = parser.parse_args(argv)
    models = params.load("models")
    if args.model not in models:
        raise PipelineError(f"unknown model {args.model!r}; known models: {', '.join(models) or 'none'}")
    model = load_model(args.model)
    classes = load_meta()["classes"]
    vectorizer = load_vectorizer()
    messages = read_messages(args.files or ["-"], params.load("fetch")["remove"])

    features, known = features_for(model, vectorizer, [text for _, text in messages])
    probabilities = torch.softmax(predict_logits(model, features).double(), 1)
    top = probabilities.topk(min(args.top_k, len(classes)), dim=1)
    for (name, _), has_words, values, indices in zip(messages, known, top.values.tolist(),
                                                     top.indices.tolist()):
        if not has_words:
            print(f"predict: {name} has no word of the model's vocabulary; its prediction "
                  "says nothing about the text", file=sys.stderr)
        ranked = [(classes[i], p) for i, p in zip(indices, values)]
        if args.json:
            print(json.dumps({"input": name, "model": args.model,
                              "predictions": [{"newsgroup": group, "probability": round(p, 6)}
                                              for group, p in ranked]}))
        else:
            print(name)
            for group, p in ranked:
                print(f"  {p:7.4f}  {group}")


if __name__ == "__main__":
    run_stage(main)
