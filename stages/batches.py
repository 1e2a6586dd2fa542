"""Mini-batches cut from a CSR matrix: only the batch's rows become tensors, never the matrix."""
import numpy as np
import torch


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

    def shuffled(self, generator):
        """One epoch in the order of a fresh ``torch.randperm`` (as DataLoader(shuffle=True))."""
        return self.iterate(torch.randperm(self.matrix.shape[0], generator=generator).numpy())

    def iterate(self, order):
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.matrix[rows]
            # embedding_bag wants indices and offsets of one integer type.
            inputs = (self._to_device(batch.indices.astype(np.int64, copy=False)),
                      self._to_device(batch.indptr[:-1].astype(np.int64, copy=False)),
                      self._to_device(batch.data))
            yield inputs, self._to_device(self.labels[rows])
