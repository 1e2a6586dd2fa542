"""The recurrent classifier: one class for RNN, LSTM and GRU cells (the cell is a parameter).

Input is the seed's: each document's bag-of-words row fed as a one-step sequence into a
recurrent layer, then a linear head over the last output.  A single step from a zero state
makes every recurrent matrix ``W_hh`` multiply zeros, so each gate is ``W_ih·x + b_ih + b_hh``
(plus, for the GRU's candidate gate, ``r * b_hn``).  That is computed here directly: ``W_ih·x``
for a sparse row is ``F.embedding_bag(mode="sum")`` over the row's non-zeros, weighted by its
values, which never densifies the 10,000-wide input (on the CPU its backward is scipy's, see
:class:`CsrTimesWeight`).  The weights are laid out exactly as in
``nn.RNN``/``nn.LSTM``/``nn.GRU`` (minus the ``W_hh`` that cannot act), with the same
initialisation, so :meth:`RecurrentClassifier.load_torch_rnn` takes
the weights of the PyTorch module and tests/test_model.py proves outputs and gradients are equal.
"""
import math

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class CsrTimesWeight(torch.autograd.Function):
    """``X·W`` for a batch of CSR rows ``X`` and a dense ``W`` (vocab × width), on the CPU.

    The forward is ``F.embedding_bag``; the backward computes ``Xᵀ·grad`` with scipy, whose
    sparse × dense product scatters each non-zero straight into the gradient.  PyTorch's own
    embedding_bag backward on the CPU first sorts the indices, which made it most of a training
    step's time (tests/test_model.py checks both give the same gradient).  With
    ``sparse_grad`` the gradient is instead a sparse COO tensor of just the rows the batch's
    words touch, the rest being zero (kernels.csr_transpose_times; optim.Adam takes it).
    """

    @staticmethod
    def forward(ctx, indices, offsets, values, weight, sparse_grad):
        ctx.save_for_backward(indices, offsets, values)
        ctx.vocab_size, ctx.sparse_grad = weight.shape[0], sparse_grad
        return F.embedding_bag(indices, weight, offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, grad_output):
        indices, offsets, values = ctx.saved_tensors
        grad_output = grad_output.contiguous().numpy()
        if not ctx.sparse_grad:
            rows = scipy.sparse.csr_matrix(
                (values.numpy(), indices.numpy(), np.append(offsets.numpy(), len(indices))),
                shape=(len(offsets), ctx.vocab_size))
            grad_weight = torch.from_numpy(np.ascontiguousarray(rows.T @ grad_output))
            return None, None, None, grad_weight, None
        from stages.kernels import csr_transpose_times  # numba: only training needs it

        touched, product = csr_transpose_times(indices.long().numpy(), offsets.long().numpy(),
                                               values.numpy(), grad_output, ctx.vocab_size)
        grad_weight = torch.sparse_coo_tensor(torch.from_numpy(touched)[None],
                                              torch.from_numpy(product),
                                              (ctx.vocab_size, grad_output.shape[1]),
                                              is_coalesced=True, check_invariants=False)
        return None, None, None, grad_weight, None


def csr_times_weight(indices, offsets, values, weight, sparse_grad=False):
    """``X·W`` for CSR rows (``indices``, ``offsets``, ``values``), never densifying ``X``;
    on the CPU, ``sparse_grad`` makes W's gradient a sparse tensor of the rows X touches."""
    if weight.device.type == "cpu":
        if sparse_grad and weight.dtype != torch.float32:
            raise TypeError(f"sparse gradients of the input weight need float32, not {weight.dtype}")
        return CsrTimesWeight.apply(indices, offsets, values, weight, sparse_grad)
    return F.embedding_bag(indices, weight, offsets, mode="sum", per_sample_weights=values)


class RecurrentClassifier(nn.Module):
    def __init__(self, cell, vocab_size, num_classes, hidden_size=128, num_layers=1,
                 dropout=0.0, bidirectional=False):
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(GATES)}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        gate_width = GATES[cell] * hidden_size * self.directions
        # Layer 0 stores W_ih transposed (vocab × gates), the layout embedding_bag reads.
        self.input_weight = nn.Parameter(torch.empty(vocab_size, gate_width))
        self.layer_weights = nn.ParameterList(
            nn.Parameter(torch.empty(gate_width, hidden_size * self.directions))
            for _ in range(num_layers - 1))
        self.bias_ih = nn.ParameterList(nn.Parameter(torch.empty(gate_width)) for _ in range(num_layers))
        self.bias_hh = nn.ParameterList(nn.Parameter(torch.empty(gate_width)) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.directions, num_classes)
        self.sparse_input_grad = False  # True: input_weight's gradient is sparse, on the CPU
        self.reset_recurrent_parameters()

    def reset_recurrent_parameters(self):
        # nn.RNNBase's initialisation: every weight and bias uniform in ±1/sqrt(hidden_size).
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, param in self.named_parameters():
            if not name.startswith("head."):
                nn.init.uniform_(param, -bound, bound)

    def step(self, gates_x, bias_hh):
        """One step from a zero state; ``gates_x`` is W_ih·x + b_ih, per direction."""
        batch = gates_x.shape[0]
        gates_x = gates_x.view(batch, self.directions, GATES[self.cell], self.hidden_size)
        bias_hh = bias_hh.view(self.directions, GATES[self.cell], self.hidden_size)
        if self.cell == "rnn":
            hidden = torch.tanh(gates_x[:, :, 0] + bias_hh[:, 0])
        elif self.cell == "lstm":
            gates = gates_x + bias_hh
            in_gate, _forget, cell_gate, out_gate = gates.unbind(2)  # forget gate acts on c0 = 0
            hidden = torch.sigmoid(out_gate) * torch.tanh(torch.sigmoid(in_gate) * torch.tanh(cell_gate))
        else:
            reset = torch.sigmoid(gates_x[:, :, 0] + bias_hh[:, 0])
            update = torch.sigmoid(gates_x[:, :, 1] + bias_hh[:, 1])
            candidate = torch.tanh(gates_x[:, :, 2] + reset * bias_hh[:, 2])
            hidden = (1 - update) * candidate  # + update * h0, and h0 = 0
        return hidden.reshape(batch, self.directions * self.hidden_size)

    def forward(self, indices, offsets, values):
        """Logits for a batch of CSR rows: column ``indices``, row ``offsets`` and ``values``."""
        gates_x = csr_times_weight(indices, offsets, values, self.input_weight,
                                   self.sparse_input_grad)
        hidden = self.step(gates_x + self.bias_ih[0], self.bias_hh[0])
        for layer, weight in enumerate(self.layer_weights, start=1):
            hidden = self.step(F.linear(self.drop(hidden), weight, self.bias_ih[layer]),
                               self.bias_hh[layer])
        return self.head(self.drop(hidden))

    # ---- the mapping to and from PyTorch's own recurrent modules --------------------------
    def _torch_names(self):
        """(our parameter, slice of its rows, nn.RNN-style name) for every recurrent tensor."""
        width = GATES[self.cell] * self.hidden_size
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                rows = slice(direction * width, (direction + 1) * width)
                weight = self.input_weight.t() if layer == 0 else self.layer_weights[layer - 1]
                yield weight, rows, "weight_ih" + suffix
                yield self.bias_ih[layer], rows, "bias_ih" + suffix
                yield self.bias_hh[layer], rows, "bias_hh" + suffix

    @torch.no_grad()
    def load_torch_rnn(self, rnn, head):
        """Take the weights of a PyTorch recurrent module and linear head (W_hh is unused)."""
        for ours, rows, name in self._torch_names():
            ours[rows].copy_(getattr(rnn, name))
        self.head.load_state_dict(head.state_dict())


def build(config, name=None):
    """The model a config describes (the one saved with its weights): a RecurrentClassifier
    for ``input: bow`` (or a config from before input modes), else a SequenceClassifier.

    Weights that cannot fit in the memory available are a one-line error naming the parameter
    at fault (of ``models.<name>``), not an allocator's traceback or the kernel's OOM killer.
    """
    needed = 4 * weight_count(config)  # float32
    available = _available_memory()
    if available is not None and needed > available:
        raise _too_large(config, name, needed, f"the {available / 2**30:.1f} GiB of memory available")
    try:
        if config.get("input", "bow") == "sequence":
            from stages.sequence_model import SequenceClassifier

            return SequenceClassifier.from_config(config)
        return RecurrentClassifier(config["cell"], config["vocab_size"], config["num_classes"],
                                   hidden_size=config["hidden_size"], num_layers=config["num_layers"],
                                   dropout=config["dropout"], bidirectional=config["bidirectional"])
    except RuntimeError as exc:  # "can't allocate memory", "Storage size calculation overflowed"
        if "allocate" not in str(exc) and "overflow" not in str(exc):
            raise
        raise _too_large(config, name, needed, "what the allocator could find") from None


def weight_count(config):
    """How many parameters :func:`build` makes for ``config``, without allocating any
    (tests/test_faults.py checks it against the models themselves)."""
    gates, hidden, layers = GATES[config["cell"]], config["hidden_size"], config["num_layers"]
    directions = 2 if config["bidirectional"] else 1
    width = hidden * directions
    head = (width + 1) * config["num_classes"]
    if config.get("input", "bow") == "sequence":
        embedding = config["embedding_dim"]
        per_direction = [gates * hidden * ((embedding if layer == 0 else width) + hidden + 2)
                         for layer in range(layers)]
        return (config["vocab_size"] + 1) * embedding + directions * sum(per_direction) + head
    gate_width = gates * width
    return (config["vocab_size"] * gate_width + (layers - 1) * gate_width * width
            + 2 * layers * gate_width + head)


def _available_memory():
    """Bytes of memory a new allocation can get (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


# The keys that size the weights, with params.yaml's defaults; vocab_size is set by
# vectorize.max_features (bag of words) or sequences.max_features (sequence models).
SIZE_DEFAULTS = {"hidden_size": 128, "embedding_dim": 128, "num_layers": 1, "vocab_size": 10000}


def _too_large(config, name, needed, limit):
    from stages.errors import PipelineError

    # The key at fault: the one whose default shrinks the weights most.
    smaller = {key: weight_count(dict(config, **{key: min(config[key], default)}))
               for key, default in SIZE_DEFAULTS.items() if key in config}
    key = min(smaller, key=smaller.get)
    vocabulary = "sequences" if config.get("input", "bow") == "sequence" else "vectorize"
    where = f"{vocabulary}.max_features" if key == "vocab_size" else f"models.{name or '<model>'}.{key}"
    return PipelineError(f"params.yaml: {where} is {config[key]}: the model's weights would take "
                         f"{needed / 2**30:,.1f} GiB, more than {limit}; lower it")
