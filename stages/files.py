"""Reading and writing stage outputs.

Every output is written to a temporary file beside its destination and renamed into place
only when complete, so an interrupted or failing stage never leaves a file that looks whole
(and DVC never caches half an output).
"""
import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stages.errors import PipelineError
from stages.paths import FEATURES, FEATURES_META, LABELS


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
        tmp.unlink(missing_ok=True)
        raise PipelineError(f"cannot write {path}: {exc.strerror or exc}; check free space and "
                            "permissions of its folder") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def load_features(subset):
    """(CSR float32 matrix, int64 labels) of the "train" or "test" split."""
    import scipy.sparse

    matrix = scipy.sparse.load_npz(require(FEATURES[subset])).tocsr()
    with np.load(require(LABELS)) as labels:
        return matrix.astype(np.float32, copy=False), labels[subset].astype(np.int64)


def load_meta():
    return read_json(require(FEATURES_META))


def load_inputs(input_mode, subset):
    """(features, labels) for a model's input mode: the CSR matrix (bow) or the token
    sequences (sequence, a ragged.Ragged), with the subset's int64 labels."""
    if input_mode == "sequence":
        from stages import ragged
        from stages.paths import SEQUENCES

        sequences = ragged.load(SEQUENCES[subset])
        with np.load(require(LABELS)) as labels:
            labels = labels[subset].astype(np.int64)
        if len(labels) != len(sequences):
            raise PipelineError(f"{SEQUENCES[subset]} has {len(sequences)} documents but "
                                f"{LABELS} has {len(labels)} labels; rerun `dvc repro`")
        return sequences, labels
    return load_features(subset)
