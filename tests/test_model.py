"""The fast model computes exactly what nn.RNN / nn.LSTM / nn.GRU compute on a one-step
sequence from a zero state, the seed's setting: same outputs, same gradients."""
import numpy as np
import pytest
import scipy.sparse
import torch
from torch import nn

from stages.batches import CsrBatches
from stages.model import RecurrentClassifier, csr_times_weight

MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SeedModel(nn.Module):
    """The seed tutorial's classifier, with its cell type and sizes as arguments."""

    def __init__(self, cell, vocab, hidden, classes, layers, bidirectional):
        super().__init__()
        self.rnn = MODULES[cell](vocab, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, x):
        out, _ = self.rnn(x.unsqueeze(1))  # zero initial state, as the seed passes
        return self.fc(out[:, -1, :])


def random_csr(rows, cols, seed):
    matrix = scipy.sparse.random(rows, cols, density=0.05, format="csr", random_state=seed,
                                 dtype="float32")
    matrix.data = (matrix.data * 5).round() + 1  # counts, like CountVectorizer
    return matrix


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_outputs_and_gradients_equal_torch_modules(cell, layers, bidirectional):
    torch.manual_seed(0)
    vocab, hidden, classes = 300, 16, 5
    seed = SeedModel(cell, vocab, hidden, classes, layers, bidirectional).double()
    fast = RecurrentClassifier(cell, vocab, classes, hidden_size=hidden, num_layers=layers,
                               bidirectional=bidirectional).double()
    fast.load_torch_rnn(seed.rnn, seed.fc)
    matrix = random_csr(12, vocab, seed=1)
    targets = torch.randint(0, classes, (12,))

    expected = seed(torch.from_numpy(matrix.toarray()).double())
    actual = fast(torch.from_numpy(matrix.indices).long(), torch.from_numpy(matrix.indptr[:-1]).long(),
                  torch.from_numpy(matrix.data).double())
    torch.testing.assert_close(actual, expected)

    nn.functional.cross_entropy(expected, targets).backward()
    nn.functional.cross_entropy(actual, targets).backward()
    ours = {name: tensor for tensor, name in grads_by_torch_name(fast)}
    for name, param in seed.rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert not param.grad.any(), "a one-step sequence from zero gives W_hh no gradient"
        else:
            torch.testing.assert_close(ours[name], param.grad, msg=name)
    torch.testing.assert_close(fast.head.weight.grad, seed.fc.weight.grad)


def grads_by_torch_name(model):
    # Gradients laid out like nn.RNN's parameters, via the same mapping as load_torch_rnn.
    for ours, rows, name in model._torch_names():
        grad = ours.grad if ours.is_leaf else model.input_weight.grad.t()
        yield grad[rows], name


def test_initialisation_matches_torch_ranges():
    model = RecurrentClassifier("lstm", 1000, 20, hidden_size=128)
    bound = 1 / 128 ** 0.5
    weight = model.input_weight.detach()
    assert weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.02)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("dtype,sparse_grad", [(torch.float32, False), (torch.float64, False),
                                               (torch.float32, True)])
def test_csr_times_weight_backward_equals_embedding_bag(dtype, sparse_grad, index_dtype):
    # The CPU backward is scipy's scatter, or the numba kernel's sparse rows, instead of
    # embedding_bag's; same gradient, an empty row and repeated columns across rows included.
    matrix = random_csr(9, 50, seed=3)
    matrix = scipy.sparse.vstack([matrix[:4], scipy.sparse.csr_matrix((1, 50)), matrix[4:]]).tocsr()
    indices = torch.from_numpy(matrix.indices).to(index_dtype)
    offsets = torch.from_numpy(matrix.indptr[:-1]).to(index_dtype)
    values = torch.from_numpy(matrix.data).to(dtype)
    grad_output = torch.randn(10, 6, dtype=dtype, generator=torch.Generator().manual_seed(0))
    gradients = []
    for product in (lambda *args: csr_times_weight(*args, sparse_grad=sparse_grad),
                    lambda i, o, v, w: nn.functional.embedding_bag(i, w, o, mode="sum",
                                                                  per_sample_weights=v)):
        weight = torch.randn(50, 6, dtype=dtype, generator=torch.Generator().manual_seed(1),
                             requires_grad=True)
        product(indices, offsets, values, weight).backward(grad_output)
        gradients.append(weight.grad)
    assert gradients[0].is_sparse == sparse_grad
    if sparse_grad:  # only the columns that some row holds, each once
        assert gradients[0]._indices()[0].tolist() == sorted(set(matrix.indices.tolist()))
        gradients[0] = gradients[0].to_dense()
    assert gradients[0].dtype == dtype and gradients[0].any()
    torch.testing.assert_close(gradients[0], gradients[1])


def test_csr_batches_are_the_rows_in_the_given_order():
    """Every batch is the CSR of its rows of the matrix, in the epoch's order (the last one
    short), with offsets of the indices' integer type, as embedding_bag requires."""
    matrix = random_csr(22, 40, seed=4)
    matrix = scipy.sparse.vstack([matrix[:5], scipy.sparse.csr_matrix((1, 40)), matrix[5:]]).tocsr()
    labels = np.arange(23) * 10
    order = np.random.default_rng(0).permutation(23)
    batches = list(CsrBatches(matrix, labels, 5, torch.device("cpu")).iterate(order))
    assert [len(targets) for _, targets in batches] == [5, 5, 5, 5, 3]
    for number, ((indices, offsets, values), targets) in enumerate(batches):
        rows = order[number * 5:number * 5 + 5]
        assert targets.tolist() == labels[rows].tolist()
        assert offsets.dtype == indices.dtype
        pieces = (values.numpy(), indices.numpy(), np.append(offsets.numpy(), len(indices)))
        batch = scipy.sparse.csr_matrix(pieces, shape=(len(rows), 40))
        assert (batch != matrix[rows]).nnz == 0
