"""predict: raw messages → the top-k newsgroups of a trained model, with probabilities.

    python -m stages.predict --model lstm message.txt other.txt
    python -m stages.predict --model gru_seq --json --top-k 5 < message.txt
    python -m stages.predict --model baseline message.txt

Each FILE (``-`` or none: standard input) is one message, read like the corpus (latin-1, the
``fetch.remove`` parts of params.yaml removed).  Uses the pipeline's artifacts: the fitted
vectorizer, meta.json and data/models/<model>.pt (or baseline.joblib), so it works after
``dvc repro`` (``dvc repro sequence/dvc.yaml`` for a sequence model) or, on a fresh clone,
after ``dvc pull``.  Plain text by default; ``--json``: one JSON object per message.

The recurrent models give probabilities (the softmax of their logits).  The baseline, a
LinearSVC, gives none: it prints its decision scores (signed distances to each newsgroup's
hyperplane, higher is likelier), labelled as scores, not dressed up as probabilities.

A FILE that cannot be read, is empty or is not text is one ``error:`` line; the other
messages are still classified, and the exit status is then 2.
"""
import argparse
import json
import sys
from pathlib import Path

# Only the standard library and the parameter checks load before the arguments are checked:
# numpy, scikit-learn and torch take seconds to import (see classify).
from stages import params
from stages.errors import PipelineError, run_stage

BASELINE = "baseline"
# ASCII control characters other than whitespace (\t \n \v \f \r): text has next to none.
CONTROL_BYTES = bytes([*range(0, 9), *range(14, 32), 127])
MAX_CONTROL_SHARE = 0.1


def positive(value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help=f"a model name from the models section of params.yaml, or {BASELINE}")
    parser.add_argument("--top-k", type=positive, default=3, help="how many newsgroups to show (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("files", nargs="*", metavar="FILE", help="messages; - or none: standard input")
    return parser.parse_args(argv)


def not_text(raw):
    """Why the bytes ``raw`` are not a message (an executable, an image), or None."""
    if b"\0" in raw:
        return "it contains NUL bytes"
    control = len(raw) - len(raw.translate(None, CONTROL_BYTES))
    if control > MAX_CONTROL_SHARE * len(raw):
        return f"{control / len(raw):.0%} of its bytes are control characters"
    return None


def read_message(name, remove):
    """(display name, text) of one FILE (``-``: standard input); a PipelineError if unusable."""
    if name == "-":
        if sys.stdin.isatty():
            print("predict: reading a message from standard input (end it with Ctrl-D)",
                  file=sys.stderr)
        raw, shown = sys.stdin.buffer.read(), "<stdin>"
    else:
        shown = name
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            raise PipelineError(f"cannot read {name}: {exc.strerror or exc}") from None
    reason = not_text(raw)
    if reason:
        raise PipelineError(f"{shown} is not text ({reason}); give a plain-text message")
    text = strip_parts(raw.decode("latin-1"), remove)
    if not text.strip():
        raise PipelineError(f"{shown} is empty{' once fetch.remove is applied' if remove else ''}"
                            "; give a message to classify")
    return shown, text


def strip_parts(text, remove):
    from stages.fetch import strip

    return strip(text, remove)


def classify(model_name, settings, texts):
    """(the newsgroups; scores, one row per text and one column per newsgroup; for each text
    whether it has a word of the model's vocabulary; what the scores are)."""
    import numpy as np

    from stages.files import REPRO, SEQUENCE_REPRO, load_baseline, load_meta, load_vectorizer

    # The model first: its artifact's error names the pipeline that makes it (and the rest).
    if model_name == BASELINE:
        classifier = load_baseline()
        classes = load_meta()["classes"]
        matrix = load_vectorizer().transform(texts).astype(np.float32)
        decision = classifier.decision_function(matrix)
        if decision.ndim == 1:  # two classes: one signed distance, positive for classes_[1]
            decision = np.stack([-decision, decision], axis=1)
        scores = np.full((len(texts), len(classes)), -np.inf)
        scores[:, classifier.classes_] = decision
        return classes, scores, np.diff(matrix.indptr) > 0, "score"

    import torch

    from stages.batches import input_mode, predict_logits
    from stages.evaluate import load_model

    sequence = settings[model_name]["input"] == "sequence"
    model = load_model(model_name, SEQUENCE_REPRO if sequence else REPRO)
    classes = load_meta()["classes"]
    vectorizer = load_vectorizer()
    if input_mode(model) == "sequence":
        from stages.files import load_sequence_vocabulary
        from stages.sequences import encode
        from stages.terms import word_analyzer

        features = encode(word_analyzer(vectorizer), load_sequence_vocabulary(), texts)
        known = features.lengths > 0
    else:
        features = vectorizer.transform(texts).astype(np.float32)
        known = np.diff(features.indptr) > 0
    probabilities = torch.softmax(predict_logits(model, features).double(), 1).numpy()
    return classes, probabilities, known, "probability"


def report(name, model_name, ranked, label, as_json):
    """Print one message's top newsgroups: [(newsgroup, value)] in decreasing order."""
    if as_json:
        print(json.dumps({"input": name, "model": model_name,
                          "predictions": [{"newsgroup": group, label: round(value, 6)}
                                          for group, value in ranked]}))
        return
    if label == "probability":
        print(name)
        for group, value in ranked:
            print(f"  {value:7.4f}  {group}")
    else:
        print(f"{name}  (decision scores of the linear SVM, not probabilities)")
        for group, value in ranked:
            print(f"  {value:+8.4f}  {group}")


def main(argv):
    args = parse_args(argv)
    settings = params.load("models")
    known_models = [*settings, BASELINE]
    if args.model not in known_models:
        raise PipelineError(f"unknown model {args.model!r}; known models: {', '.join(known_models)}")
    remove = params.load("fetch")["remove"]

    # (name, text) of each FILE in argument order, or (None, the error that stops it)
    messages = []
    for name in args.files or ["-"]:
        try:
            messages.append(read_message(name, remove))
        except PipelineError as exc:
            messages.append((None, exc))
    texts = [text for name, text in messages if name is not None]
    if texts:
        classes, scores, known, label = classify(args.model, settings, texts)
    row = 0
    for name, text_or_error in messages:
        sys.stdout.flush()  # stderr lines beside the output of the messages around them
        if name is None:
            print(f"error: {text_or_error}", file=sys.stderr)
            continue
        if not known[row]:
            print(f"predict: {name} has no word of the model's vocabulary; its prediction "
                  "says nothing about the text", file=sys.stderr)
        # The baseline has no score for a newsgroup absent from its training data: -inf.
        scored = (i for i in range(len(classes)) if scores[row, i] > float("-inf"))
        order = sorted(scored, key=lambda i: -scores[row, i])[:args.top_k]
        report(name, args.model, [(classes[i], float(scores[row, i])) for i in order], label,
               args.json)
        row += 1
    if len(texts) < len(messages):
        sys.exit(2)

if __name__ == "__main__":
    run_stage(main)
