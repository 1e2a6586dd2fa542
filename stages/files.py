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
from stages.paths import FEATURES, FEATURES_META, LABELS, VECTORIZER


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

    return pq.read_table(require(path), columns=columns)


def require(path):
    """Return ``path`` if it exists, else say which stage makes it."""
    if not Path(path).exists():
        raise PipelineError(f"{path} is missing: run `dvc repro` (or `dvc pull`) to create it")
    return path


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


def load_labels(subset):
    """The int64 labels of the "train" or "test" split."""
    with np.load(require(LABELS)) as labels:
        return labels[subset].astype(np.int64)


def load_features(subset):
    """(CSR float32 matrix, int64 labels) of the "train" or "test" split."""
    import scipy.sparse

    matrix = scipy.sparse.load_npz(require(FEATURES[subset])).tocsr()
    return matrix.astype(np.float32, copy=False), load_labels(subset)


def load_vectorizer():
    """The vectorizer fitted by the vectorize stage (a joblib pickle the pipeline wrote)."""
    import joblib

    return joblib.load(require(VECTORIZER))


def load_meta():
    return read_json(require(FEATURES_META))
