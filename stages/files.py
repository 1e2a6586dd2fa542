"""Reading and writing stage outputs.

Every output is written to a temporary file beside its destination and renamed into place
only when complete, so an interrupted or failing stage never leaves a file that looks whole
(and DVC never caches half an output).
"""
import csv
import json
import os
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from stages.errors import PipelineError
from stages.paths import (BASELINE_MODEL, FEATURES, FEATURES_META, LABELS, SEQUENCE_VOCABULARY,
                          VECTORIZER)


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success rename it to ``path``, else delete it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        reason = exc.strerror or str(exc)
        if exc.filename and Path(exc.filename) not in (path, tmp):  # e.g. the folder
            reason = f"{exc.filename}: {reason}"
        raise PipelineError(f"cannot write {path}: {reason}; check free space and "
                            "permissions of its folder") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp):
    # Never hide the error being reported: the folder itself may be what failed.
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path, header, rows):
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def write_parquet(path, table):
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path, columns=None):
    import pyarrow.parquet as pq

    with reading(path, "Parquet table"):
        return pq.read_table(path, columns=columns)


# The command that rebuilds an artifact: the main pipeline's, or the sequence models'.
REPRO = "dvc repro"
SEQUENCE_REPRO = "dvc repro sequence/dvc.yaml"


def require(path, rebuild=REPRO):
    """Return ``path`` if it exists, else say how to make it (``rebuild``: its pipeline)."""
    if not Path(path).exists():
        raise PipelineError(f"{path} is missing: run `{rebuild}` (or `dvc pull`) to create it")
    return path


@contextmanager
def reading(path, kind, rebuild=REPRO):
    """Parse ``path``, a ``kind`` the pipeline wrote, inside the block.

    Whatever a truncated or garbage file makes the parser raise (each library has its own
    exceptions, OSError with an errno among them) becomes one line naming the file and how to
    get a good copy back.  A file that cannot even be opened is reported as such first.
    """
    require(path, rebuild)
    try:
        open(path, "rb").close()
    except OSError as exc:
        raise PipelineError(f"cannot read {path}: {exc.strerror or exc}; check its "
                            "permissions") from None
    try:
        yield path
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(damaged(path, kind, exc, rebuild)) from None


def damaged(path, kind, exc, rebuild=REPRO):
    """The one-line message for a file that is not the ``kind`` the pipeline wrote there."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # The first sentence: the rest of a library's message is advice that does not apply
    # (numpy's, for instance, suggests unpickling the file).
    detail = detail.split(". ")[0][:100]
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return (f"{path} is not a readable {kind} ({reason}); it was cut short or changed since the "
            f"pipeline wrote it: restore it with `dvc checkout --force {path}` or `dvc pull "
            f"--force {path}`, or rebuild it with `{rebuild}`")


def save_csr(path, matrix):
    import scipy.sparse

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object, so save_npz does not append ".npz"
            scipy.sparse.save_npz(f, matrix.tocsr(), compressed=False)


def save_weights(path, checkpoint):
    """``torch.save`` to ``path``, atomically.

    Serialised in memory first: torch's zip writer reports a full disk as a RuntimeError from
    C++, which would escape as a traceback; a plain write raises the OSError that
    :func:`atomic_path` turns into a one-line error.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_weights(path, rebuild=REPRO):
    """The checkpoint dict ``save_weights`` wrote, on the CPU.  Never unpickles code."""
    import pickle
    import warnings

    import torch

    with reading(path, "checkpoint", rebuild):
        try:
            with warnings.catch_warnings():
                # torch warns about a foreign pickle protocol before refusing the file; the
                # error below says all the user needs.
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch refuses garbage and code alike; code names a GLOBAL, and a plain pickle
            # (not torch's zip) starts with the PROTO opcode.  torch's own message suggests
            # weights_only=False, i.e. running the file's code.
            with open(path, "rb") as f:
                pickled = f.read(1) == b"\x80"
            if "GLOBAL" not in str(exc) and not pickled:
                raise
            raise PipelineError(
                f"{path} was refused: it holds something other than tensors and plain data, so "
                "this pipeline did not write it (weights load with weights_only=True, which "
                f"never runs code from the file); delete it and rerun `{rebuild}`, or `dvc "
                "pull` from a trusted remote") from None


def load_labels(subset):
    """The int64 labels of the "train" or "test" split."""
    with reading(LABELS, "labels array"), np.load(LABELS) as labels:
        return labels[subset].astype(np.int64)


def load_features(subset):
    """(CSR float32 matrix, int64 labels) of the "train" or "test" split."""
    import scipy.sparse

    with reading(FEATURES[subset], "sparse feature matrix"):
        matrix = scipy.sparse.load_npz(FEATURES[subset]).tocsr()
    return matrix.astype(np.float32, copy=False), load_labels(subset)


# The two pickles the pipeline loads, both its own outputs (README, "Errors and faults").
def load_vectorizer():
    """The vectorizer fitted by the vectorize stage (a joblib pickle the pipeline wrote)."""
    import joblib

    with reading(VECTORIZER, "fitted vectorizer"):
        return joblib.load(VECTORIZER)


def load_baseline():
    """The baseline stage's fitted LinearSVC pipeline (a joblib pickle the pipeline wrote)."""
    import joblib

    with reading(BASELINE_MODEL, "fitted baseline"):
        return joblib.load(BASELINE_MODEL)


def load_meta():
    with reading(FEATURES_META, "JSON file"):
        return read_json(FEATURES_META)


def load_sequence_vocabulary():
    """The sequence models' words (stage sequences): a list, the position of a word its id."""
    with reading(SEQUENCE_VOCABULARY, "JSON file", SEQUENCE_REPRO):
        return read_json(SEQUENCE_VOCABULARY)
