"""Accuracy benchmark: settings × models, each row a real `dvc exp run` of the pipeline.

    python -m bench.accuracy                      # the whole grid: 67 rows, over 90 min on 2 CPU cores
    python -m bench.accuracy --settings bydate --models full-gru,full-baseline
    python -m bench.accuracy --dry-run            # print each row's command, run nothing

On the real corpus ($NEWSGROUPS_ARCHIVE or --archive).  The committed repository is cloned into
a temporary folder (or --workdir, kept for a later resume), so the workspace is never touched.
For each row the clone is reset to the commit, the row's command runs there, and its metrics,
vocabulary size and timings are read from the clone's workspace.  bench/accuracy.json (the rows)
and bench/accuracy.md (a table) are rewritten after every row; rows already in the json are
skipped, so an interrupted run resumes where it stopped (``--rerun`` runs the selected rows
again, replacing theirs).  Each row names the commit it ran at.
"""
import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]

# Each setting: the split and the text the models see.
SETTINGS = {
    "seed": {"split.strategy": "random"},  # the seed tutorial's random 80/20, headers kept
    "bydate": {"split.strategy": "bydate"},  # the corpus's own train/test, headers kept
    "bydate-clean": {"split.strategy": "bydate", "fetch.remove": "[headers,footers,quotes]"},
}

# The named parameter sets: sublinear tf-idf over the whole vocabulary (terms in >= 2 training
# messages), a wide recurrent layer with dropout, early stopping on 5 % of the train split.
# The baseline gets tfidf: false since the features already are tf-idf: the same sublinear-tf-idf
# LinearSVC, on the same features as the recurrent model beside it.
FULL_FEATURES = {"vectorize.max_features": "null", "vectorize.min_df": "2",
                 "vectorize.weighting": "tfidf", "baseline.tfidf": "false"}
TRAINING = {"train.lr": "0.002", "train.epochs": "20", "train.validation_fraction": "0.05",
            "train.patience": "3"}
# Unigrams and bigrams: 491,197 terms on the seed's split, a 377 M-weight input matrix for a
# GRU of 256; lazy_adam steps only the rows a batch touches (README, "Accuracy benchmark").
BIGRAMS = {**FULL_FEATURES, "vectorize.ngram_range": "[1,2]"}
# The Subject line's words also as terms of their own (stages/terms.py).  Not run where
# fetch.remove drops the headers: there is no Subject, and the row would repeat full-* or bigram-*.
# Over unigrams every train term is kept (min_df 1: on bydate, subject-rnn's four seeds scored
# 0.8797-0.8824 against 0.8779-0.8804 with min_df 2); bigrams keep min_df 2, as bigram-* do.
SUBJECT = {"vectorize.header_fields": "[subject]"}
# Character n-grams (2-5, within words) as a second block beside the words: 474,822 terms on
# bydate-clean, trained with lazy_adam.  Hidden 512 for the RNN (0.7252 on bydate-clean against
# 0.7173-0.7238 at 256 and 0.7197-0.7219 with dropout 0.7 at 512 and 768, one run each), and the
# same 512 gate columns for the other cells.
CHARS = {**FULL_FEATURES, "vectorize.char_ngram_range": "[2,5]"}
# Word bigrams too (ngram_range [1, 2] in the words' block, beside the character block): 678,520
# terms on bydate-clean, where char-bigram-rnn scored 0.7301 against char-rnn's 0.7252 (the
# LinearSVC 0.7203 against 0.7115).  Only on bydate-clean: where the headers are kept the Subject
# terms do better (subject-*) and character n-grams did not help (char-* there).
CHAR_BIGRAMS = {**CHARS, "vectorize.ngram_range": "[1,2]"}


def wide(model, hidden=256):
    return {f"models.{model}.hidden_size": str(hidden), f"models.{model}.dropout": "0.5"}


def char_entries(name, features, training=TRAINING):
    """``<name>-rnn``, ``-lstm``, ``-gru`` over ``features`` with ``training``, lazy_adam and the
    same 512 gate columns (hidden 512, 128, 170), and ``<name>-baseline``: the LinearSVC on them."""
    entries = {f"{name}-{model}": (model, {**features, **training, **wide(model, hidden),
                                          "train.optimizer": "lazy_adam"}, f"evaluate@{model}")
               for model, hidden in (("rnn", 512), ("lstm", 128), ("gru", 170))}
    return {**entries, f"{name}-baseline": ("baseline", features, "baseline")}


# The mean of the weights from epoch 2 on (train.swa_start), once the model fits the train split,
# for 12 epochs; the validation slice picks the best of the running means.  No patience: the mean
# improves slowly, and patience 3 stopped char-bigram-rnn at epoch 6 (0.7248).
AVERAGED = {**TRAINING, "train.epochs": "12", "train.patience": "0", "train.swa_start": "2"}
CHAR_BIGRAM_ENTRIES = char_entries("char-bigram", CHAR_BIGRAMS, AVERAGED)


# name -> (model, parameter overrides, the dvc target that leaves metrics/<model>.json)
ENTRIES = {
    **{model: (model, {}, f"evaluate@{model}") for model in ("rnn", "lstm", "gru")},
    **{model: (model, {}, f"sequence/dvc.yaml:evaluate@{model}")
       for model in ("rnn_seq", "lstm_seq", "gru_seq")},
    "baseline": ("baseline", {}, "baseline"),
    **{f"full-{model}": (model, {**FULL_FEATURES, **TRAINING, **wide(model)}, f"evaluate@{model}")
       for model in ("rnn", "lstm", "gru")},
    "full-baseline": ("baseline", FULL_FEATURES, "baseline"),
    # The input matrix is bigrams × gates × hidden: the same 768 gate columns for each cell.
    **{f"bigram-{model}": (model, {**BIGRAMS, **TRAINING, **wide(model, hidden),
                                   "train.optimizer": "lazy_adam"}, f"evaluate@{model}")
       for model, hidden in (("rnn", 768), ("lstm", 192), ("gru", 256))},
    "bigram-baseline": ("baseline", BIGRAMS, "baseline"),
    **{f"subject-{model}": (model, {**FULL_FEATURES, "vectorize.min_df": "1", **SUBJECT,
                                    **TRAINING, **wide(model)}, f"evaluate@{model}")
       for model in ("rnn", "lstm", "gru")},
    "subject-baseline": ("baseline", {**FULL_FEATURES, "vectorize.min_df": "1", **SUBJECT},
                         "baseline"),
    **{f"subject-bigram-{model}": (model, {**BIGRAMS, **SUBJECT, **TRAINING, **wide(model, hidden),
                                           "train.optimizer": "lazy_adam"}, f"evaluate@{model}")
       for model, hidden in (("rnn", 768), ("lstm", 192), ("gru", 256))},
    "subject-bigram-baseline": ("baseline", {**BIGRAMS, **SUBJECT}, "baseline"),
    **char_entries("char", CHARS),
    **CHAR_BIGRAM_ENTRIES,
    # lstm_seq reading the first 150 known words instead of 100 (about 1.5x the time), gru_seq
    # 200 instead of 150.
    "long-lstm_seq": ("lstm_seq", {"models.lstm_seq.max_length": "150"},
                      "sequence/dvc.yaml:evaluate@lstm_seq"),
    "long-gru_seq": ("gru_seq", {"models.gru_seq.max_length": "200"},
                     "sequence/dvc.yaml:evaluate@gru_seq"),
}

# Published accuracy on `bydate` with headers (the split of Yao et al. 2019, TextGCN, and its
# followers), as issue 14 lists them.
ANCHORS = [("BertGCN", 89.3), ("TensorGCN", 87.7), ("TextGCN", 86.3), ("BERT", 85.3),
           ("WideMLP on tf-idf (Galke & Scherp 2022)", 84.2), ("fastText", 79.4), ("LSTM", 75.4)]


def in_params_file(key):
    """Whether params.yaml spells out ``key`` (dotted); train.* keys may be left to defaults."""
    section = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for part in key.split("."):
        if not isinstance(section, dict) or part not in section:
            return False
        section = section[part]
    return True


def applies(setting, entry):
    """Whether the grid holds ``entry`` on ``setting``: header terms only where headers are kept,
    char-bigram-* only where they are removed."""
    headers_removed = "headers" in SETTINGS[setting].get("fetch.remove", "")
    if "vectorize.header_fields" in ENTRIES[entry][1]:
        return not headers_removed
    return headers_removed or entry not in CHAR_BIGRAM_ENTRIES


def command(setting, entry):
    """The shell command that reproduces a row in a fresh clone (leaving metrics/<model>.json).
    A key that params.yaml leaves to its default is added with DVC's ``+key=value``."""
    _, overrides, target = ENTRIES[entry]
    flags = [f"-S {shlex.quote(('' if in_params_file(key) else '+') + f'{key}={value}')}"
             for key, value in {**SETTINGS[setting], **overrides}.items()]
    return " ".join(["dvc exp run", f"-n {setting}-{entry}", *flags, shlex.quote(target)])


def make_row(setting, entry, model, command, scores, meta, timings, epochs, commit):
    """One row of bench/accuracy.json.  ``timings`` is data/timings/<model>.json (None for the
    baseline, which has no epochs); ``epochs`` the rows of the model's training log; ``commit``
    the clone's, where ``command`` ran."""
    row = {"setting": setting, "config": entry, "model": model,
           "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
           "features": meta["n_features"], "epochs": epochs,
           "train_seconds": None, "epoch_seconds": None, "peak_rss_mb": None,
           "command": command, "commit": commit}
    if timings:
        row.update(train_seconds=timings["train_seconds"],
                   epoch_seconds=round(statistics.median(timings["epoch_seconds"]), 3),
                   peak_rss_mb=timings["peak_rss_mb"])
    return row


def markdown(rows):
    def cell(value, digits=None):
        if value is None:
            return "–"
        return f"{value:.{digits}f}" if digits is not None else str(value)

    lines = ["Generated by `python -m bench.accuracy`: every row is one `dvc exp run` (its "
             "`command` in bench/accuracy.json) in a clone of the row's commit, on the real corpus.",
             "", "| setting | configuration | model | features | accuracy | macro-F1 | epochs | "
             "epoch s (median) | train s | peak RSS MB | commit |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['config']} | {r['model']} | {r['features']:,} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {cell(r['epochs'])} | "
                     f"{cell(r['epoch_seconds'], 1)} | {cell(r['train_seconds'], 1)} | "
                     f"{cell(r['peak_rss_mb'])} | {r['commit']} |")
    lines += ["", "Published accuracy on `bydate` with headers, for comparison: "
              + "; ".join(f"{name} {value}" for name, value in ANCHORS) + "."]
    return "\n".join(lines) + "\n"


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def run_row(clone, commit, setting, entry, env, log):
    """Run one row's command in the clone; return the row."""
    model = ENTRIES[entry][0]
    shell = command(setting, entry)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=clone, check=True)
    shutil.rmtree(clone / "data" / "timings", ignore_errors=True)
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(shell, shell=True, cwd=clone, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        sys.exit(f"error: {setting} {entry}: `{shell}` failed (log {log}):\n" + "\n".join(tail))
    timings = epochs = None
    if model != "baseline":
        timings = read_json(clone / "data" / "timings" / f"{model}.json")
        if timings is None:
            print(f"  {setting} {entry}: train stage restored from DVC's cache, no timings",
                  file=sys.stderr)
        with open(clone / "metrics" / "train" / f"{model}.csv", encoding="utf-8") as f:
            epochs = sum(1 for _ in csv.DictReader(f))
    return make_row(setting, entry, model, shell, read_json(clone / "metrics" / f"{model}.json"),
                    read_json(clone / "data" / "features" / "meta.json"), timings, epochs, commit)


def put_row(rows, row):
    """``rows`` with ``row`` in the place of the one of its setting and configuration (a rerun),
    else after them all."""
    key = (row["setting"], row["config"])
    if any((r["setting"], r["config"]) == key for r in rows):
        return [row if (r["setting"], r["config"]) == key else r for r in rows]
    return rows + [row]


def choose(names, known, what):
    chosen = names.split(",") if names else list(known)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        sys.exit(f"error: unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--settings", help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--models", help=f"comma-separated, of {', '.join(ENTRIES)}")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--rerun", action="store_true",
                        help="run the selected rows even if measured, replacing their rows")
    parser.add_argument("--archive", default=os.environ.get("NEWSGROUPS_ARCHIVE"))
    parser.add_argument("--workdir", type=Path, help="clone here and keep it (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench")
    args = parser.parse_args(argv)
    grid = [(s, e) for s in choose(args.settings, SETTINGS, "setting")
            for e in choose(args.models, ENTRIES, "model") if applies(s, e)]
    results = args.output / "accuracy.json"
    rows = read_json(results) or []
    done = {(r["setting"], r["config"]) for r in rows}
    todo = [cell for cell in grid if args.rerun or cell not in done]
    if args.dry_run:
        for setting, entry in grid:
            measured = (setting, entry) in done and not args.rerun
            print(("# done: " if measured else "") + command(setting, entry))
        return
    if not args.archive or not Path(args.archive).is_file():
        sys.exit("error: set NEWSGROUPS_ARCHIVE (or --archive) to the real 20news-bydate.tar.gz")
    env = dict(os.environ, NEWSGROUPS_ARCHIVE=str(Path(args.archive).resolve()), DVC_NO_ANALYTICS="1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    clone = workdir / "repo"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # The rows come from the clone's commit (a resumed --workdir keeps the one it was cloned at).
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    print(f"{len(todo)} of {len(grid)} rows to run ({len(grid) - len(todo)} already in {results}), "
          f"commit {commit}", file=sys.stderr)
    started = time.perf_counter()
    try:
        for number, (setting, entry) in enumerate(todo, start=1):
            print(f"[{number}/{len(todo)}] {setting} {entry}: started", file=sys.stderr, flush=True)
            row_started = time.perf_counter()
            row = run_row(clone, commit, setting, entry, env, workdir / f"{setting}-{entry}.log")
            rows = put_row(rows, row)
            args.output.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
            (args.output / "accuracy.md").write_text(markdown(rows), encoding="utf-8")
            print(f"[{number}/{len(todo)}] {setting} {entry}: accuracy {row['accuracy']:.4f} "
                  f"({time.perf_counter() - row_started:.0f} s; "
                  f"{time.perf_counter() - started:.0f} s in all)", file=sys.stderr, flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
