"""The sequence classifier: a document's words read in order by RNN, LSTM or GRU layers
(``models.<name>.input: sequence``; model.build makes it from a config)."""
import torch
from torch import nn

RNN_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceClassifier(nn.Module):
    """Embedding → RNN/LSTM/GRU layers over the words in order → pooling → dropout → linear.

    ``forward(ids, lengths)`` takes a batch padded to its longest row and the true lengths
    (see batches.SequenceBatches).  Inside, activations are time-major (steps × batch ×
    features), the layout the RNN kernels step through: batch-first layers would copy every
    layer's input and output (and their gradients) into it and back.  Every layer and
    direction is its own one-layer
    ``nn.RNN``/``nn.LSTM``/``nn.GRU``; the backward direction reads each row reversed within its
    length, so padding never reaches a real step.  Together they compute what one
    ``nn.GRU(num_layers=..., bidirectional=...)`` computes on each unpadded sequence
    (tests/test_sequence.py proves it).  How a layer steps through the batch:

    * packed (``pack_padded_sequence``), the default on CUDA: cuDNN skips padding entirely;
    * padded, the default elsewhere: the layer also steps over padding, whose outputs are then
      ignored.  On the CPU this is several times faster than packing, whose backward pass
      writes a gradient the size of the whole batch for every time step; there a GRU layer
      runs as :func:`gru_scan.gru_layer` (the same function, in fewer operations).

    ``pooling`` is ``last`` (the forward direction's state after the last word, the backward
    one's after the first: nn.GRU's ``h_n``), ``mean`` or ``max`` over the top layer's outputs.
    Dropout acts on the embeddings, between layers and before the head.  Id ``vocab_size`` is
    padding (a zero vector): what an empty document reads.
    """

    input = "sequence"

    def __init__(self, cell, vocab_size, num_classes, embedding_dim=128, hidden_size=128,
                 num_layers=1, dropout=0.0, bidirectional=False, pooling="last", max_length=400):
        super().__init__()
        if cell not in RNN_MODULES:
            raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(RNN_MODULES)}")
        if pooling not in ("last", "mean", "max"):
            raise ValueError(f"unknown pooling {pooling!r}; expected last, mean or max")
        self.cell, self.pooling, self.max_length = cell, pooling, max_length
        self.pad_index = vocab_size
        self.packed = None  # None: pack on CUDA only; True/False force it (tests)
        directions = 2 if bidirectional else 1
        width = hidden_size * directions
        self.embedding = nn.Embedding(vocab_size + 1, embedding_dim, padding_idx=vocab_size)
        self.layers = nn.ModuleList(
            nn.ModuleList(RNN_MODULES[cell](embedding_dim if layer == 0 else width, hidden_size,
                                            batch_first=False) for _ in range(directions))
            for layer in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    @classmethod
    def from_config(cls, config):
        return cls(config["cell"], config["vocab_size"], config["num_classes"],
                   embedding_dim=config["embedding_dim"], hidden_size=config["hidden_size"],
                   num_layers=config["num_layers"], dropout=config["dropout"],
                   bidirectional=config["bidirectional"], pooling=config["pooling"],
                   max_length=config["max_length"])

    @staticmethod
    def _run(rnn, x, lengths, packed):
        """Outputs of a one-layer ``rnn`` over padded, time-major ``x``; junk (or zero) past
        each length."""
        if not packed:
            if isinstance(rnn, nn.GRU):
                from stages import gru_scan  # numba: only a GRU needs it (load time, ~80 MB)

                if gru_scan.usable(rnn, x):
                    return gru_scan.gru_layer(rnn, x)
            return rnn(x)[0]
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        sequence = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        return pad_packed_sequence(rnn(sequence)[0], total_length=x.shape[0])[0]

    def forward(self, ids, lengths):
        packed = ids.is_cuda if self.packed is None else self.packed
        lengths = lengths.to(ids.device)
        positions = torch.arange(ids.shape[1], device=ids.device)[:, None]
        valid = (positions < lengths).unsqueeze(2)  # steps × batch × 1
        # Reverses each row within its length (padding stays where it is); its own inverse.
        reverse = torch.where(valid[..., 0], lengths - 1 - positions, positions)

        def flip(x):
            return x.gather(0, reverse.unsqueeze(2).expand_as(x))

        x = self.drop(self.embedding(ids.t()))
        for layer, directions in enumerate(self.layers):
            if layer:
                x = self.drop(x)
            outputs = [self._run(directions[0], x, lengths, packed)]
            if len(directions) == 2:
                outputs.append(flip(self._run(directions[1], flip(x), lengths, packed)))
            x = torch.cat(outputs, 2)
        if self.pooling == "last":
            last = x.gather(0, (lengths - 1).view(1, -1, 1).expand(1, -1, x.shape[2]))[0]
            pooled = torch.cat([last[:, :outputs[0].shape[2]], x[0, :, outputs[0].shape[2]:]], 1)
        elif self.pooling == "mean":
            pooled = x.masked_fill(~valid, 0.0).sum(0) / lengths.to(x.dtype).unsqueeze(1)
        else:
            pooled = x.masked_fill(~valid, float("-inf")).amax(0)
        return self.head(self.drop(pooled))
