"""Ragged integer sequences: every document's token ids back to back, plus row offsets.

Row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.  On disk an ``.npz`` holds exactly these
two arrays (``values`` int32, ``offsets`` int64 with ``len(rows) + 1`` entries): nothing is
padded, so a long document costs its own length and nothing more.
"""
import numpy as np

from stages.errors import PipelineError
from stages.files import SEQUENCE_REPRO, atomic_path, reading


class Ragged:
    def __init__(self, values, offsets):
        self.values = np.asarray(values, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_rows(cls, rows):
        rows = [np.asarray(row, dtype=np.int32) for row in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(row) for row in rows], out=offsets[1:])
        values = np.concatenate(rows) if rows else np.zeros(0, np.int32)
        return cls(values, offsets)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self):
        return np.diff(self.offsets)

    def take(self, rows):
        """A new Ragged with the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Ragged.from_rows([self[i] for i in rows])

    def check(self, where, vocab_size=None):
        """Raise a PipelineError unless the arrays describe well-formed rows (of ids < vocab_size)."""
        problem = None
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            problem = "offsets do not start at 0"
        elif np.any(np.diff(self.offsets) < 0) or self.offsets[-1] != len(self.values):
            problem = "offsets are not increasing up to the number of values"
        elif len(self.values) and self.values.min() < 0:
            problem = "negative token id"
        elif vocab_size is not None and len(self.values) and self.values.max() >= vocab_size:
            problem = f"token id {self.values.max()} outside the vocabulary of {vocab_size}"
        if problem:
            raise PipelineError(f"{where}: {problem}; rerun `{SEQUENCE_REPRO}` to rebuild it")
        return self


def save(path, ragged):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object, so savez does not append ".npz"
            np.savez(f, values=ragged.values, offsets=ragged.offsets)


def load(path):
    """The Ragged saved at ``path``, checked; a broken file is a one-line error."""
    with reading(path, "ragged array", SEQUENCE_REPRO), np.load(path) as npz:
        ragged = Ragged(npz["values"], npz["offsets"])
    return ragged.check(path)
