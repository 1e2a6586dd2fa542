"""A model's inputs and their mini-batches: CSR rows (bag of words) or ragged token sequences.

Only a batch's rows ever become tensors, never the whole matrix.
"""
import numpy as np
import torch

from stages import ragged
from stages.errors import PipelineError
from stages.files import load_features, load_labels
from stages.paths import LABELS, SEQUENCES


class CsrBatches:
    """Yields ``((indices, offsets, values), targets)`` batches on ``device``.

    ``indices``/``offsets``/``values`` are the CSR pieces of the batch's rows, the input of
    ``F.embedding_bag``.  On CUDA they are copied from pinned memory without blocking.
    """

    def __init__(self, matrix, labels, batch_size, device):
        self.matrix, self.labels = matrix, np.asarray(labels)
        self.batch_size, self.device = batch_size, device
        self.pin = device.type == "cuda"

    def __len__(self):
        return -(-self.matrix.shape[0] // self.batch_size)

    def _to_device(self, array):
        tensor = torch.from_numpy(array)
        if self.pin:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def __iter__(self):
        return self.iterate(np.arange(self.matrix.shape[0]))

    def epoch_plan(self, order, generator):
        """A training epoch's batches: consecutive slices of the shuffled ``order``."""
        return order

    def iterate(self, order):
        # One scipy gather puts the epoch's rows in order; each batch is then a contiguous
        # slice of it, several times cheaper than indexing the matrix once per batch.
        matrix, labels = self.matrix[order], self.labels[order]
        for start in range(0, len(order), self.batch_size):
            stop = min(start + self.batch_size, len(order))
            first, last = matrix.indptr[start], matrix.indptr[stop]
            # embedding_bag takes int32 or int64 indices, as long as offsets have the same type.
            offsets = (matrix.indptr[start:stop] - first).astype(matrix.indices.dtype)
            inputs = (matrix.indices[first:last], offsets, matrix.data[first:last])
            yield tuple(map(self._to_device, inputs)), self._to_device(labels[start:stop])


class SequenceBatches:
    """Yields ``((ids, lengths), targets)`` batches of ragged token sequences.

    Each row is cut to its first ``max_length`` ids; ``ids`` is the batch padded with
    ``pad_index`` only to its own longest row (on ``device``), ``lengths`` the true lengths
    (on the CPU, as ``pack_padded_sequence`` wants).  An empty row becomes one ``pad_index``
    token, so that every sequence has a step.  Same iteration API as CsrBatches, plus length
    bucketing for training (:meth:`epoch_plan`).
    """

    # Rows sorted by length within windows of this many batches: padding then costs ~3 % of
    # the real tokens (33 % for batches of the shuffled order), while a batch still draws its
    # rows from a random twentieth of the epoch rather than from one fixed length band.
    BUCKET_WINDOW = 20

    def __init__(self, sequences, labels, batch_size, device, max_length, pad_index):
        self.sequences, self.labels = sequences, np.asarray(labels)
        self.batch_size, self.device = batch_size, device
        self.max_length, self.pad_index = max_length, pad_index
        self.lengths = np.minimum(sequences.lengths, max_length)

    def __len__(self):
        return -(-len(self.sequences) // self.batch_size)

    def __iter__(self):
        return self.iterate(np.arange(len(self.sequences)))

    def epoch_plan(self, order, generator):
        """A training epoch's batches: ``order`` cut into batches of similar lengths, in a
        random order of batches.

        Each window of ``BUCKET_WINDOW`` batches of ``order`` is sorted by length (stable) and
        cut into batches; ``generator`` (a seeded ``torch.Generator``) shuffles the batches.
        Every row of ``order`` is in exactly one batch."""
        order = np.asarray(order)
        window = self.batch_size * self.BUCKET_WINDOW
        batches = []
        for start in range(0, len(order), window):
            rows = order[start:start + window]
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            batches += [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def pad(self, rows):
        starts = self.sequences.offsets[rows]
        lengths = self.lengths[rows]
        columns = np.arange(max(int(lengths.max()), 1))
        inside = columns < lengths[:, None]
        ids = np.full((len(rows), len(columns)), self.pad_index, dtype=np.int64)
        ids[inside] = self.sequences.values[(starts[:, None] + columns)[inside]]
        return ids, np.maximum(lengths, 1)

    def iterate(self, order):
        """Batches of ``order``: consecutive slices of it, or the given list of row batches."""
        if not isinstance(order, list):
            order = [order[start:start + self.batch_size]
                     for start in range(0, len(order), self.batch_size)]
        for rows in order:
            rows = np.asarray(rows)
            ids, lengths = self.pad(rows)
            yield ((torch.from_numpy(ids).to(self.device), torch.from_numpy(lengths)),
                   torch.from_numpy(self.labels[rows]).to(self.device))


EVAL_BATCH = {"bow": 1024, "sequence": 256}


def input_mode(model):
    """"bow" (CSR rows) or "sequence" (token ids): what ``model`` reads."""
    return getattr(model, "input", "bow")


def make_batches(model, features, labels, batch_size, device):
    """The batch iterator a model reads: CSR rows for bag-of-words, token ids for sequences."""
    if input_mode(model) == "sequence":
        return SequenceBatches(features, labels, batch_size, device, model.max_length,
                               model.pad_index)
    return CsrBatches(features, labels, batch_size, device)


def load_inputs(input_mode, subset):
    """(features, labels) for a model's input mode: the CSR matrix (bow) or the token
    sequences (sequence, a ragged.Ragged), with the subset's int64 labels."""
    if input_mode == "sequence":
        sequences = ragged.load(SEQUENCES[subset])
        labels = load_labels(subset)
        if len(labels) != len(sequences):
            raise PipelineError(f"{SEQUENCES[subset]} has {len(sequences)} documents but "
                                f"{LABELS} has {len(labels)} labels; rerun `dvc repro`")
        return sequences, labels
    return load_features(subset)


@torch.no_grad()
def predict_logits(model, features, device=torch.device("cpu")):
    """Logits of ``model`` (in eval mode) for a CSR matrix or ragged sequences, on ``device``.

    Sequences are batched in order of length (the least padding), the logits returned in the
    order of ``features``."""
    training = model.training
    model.eval()
    count = len(features) if input_mode(model) == "sequence" else features.shape[0]
    batches = make_batches(model, features, torch.zeros(count, dtype=torch.long),
                           EVAL_BATCH[input_mode(model)], device)
    if input_mode(model) == "bow":
        logits = torch.cat([model(*inputs) for inputs, _ in batches])
    else:
        order = np.argsort(batches.lengths, kind="stable")
        logits = torch.cat([model(*inputs) for inputs, _ in batches.iterate(order)])
        logits = logits[torch.from_numpy(np.argsort(order))]
    model.train(training)
    return logits
