"""stages/optim.py's Adam takes the steps torch.optim.Adam takes, from dense gradients and from
sparse ones (as dense gradients with zero rows), and the bag-of-words model trained with it on
sparse gradients ends where torch's Adam on dense gradients ends."""
import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

from stages import optim
from stages.model import RecurrentClassifier


def sparse_rows(dense, rows):
    """``dense`` kept only in ``rows`` (in that order, repeats summed), as a sparse COO tensor."""
    rows = torch.tensor(rows, dtype=torch.long)
    return torch.sparse_coo_tensor(rows[None], dense[rows], dense.shape, check_invariants=True)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_takes_torch_adams_steps_from_dense_and_sparse_gradients(weight_decay):
    generator = torch.Generator().manual_seed(0)
    shapes = [(40, 6), (6,), (3, 4, 5)]
    ours = [torch.randn(shape, generator=generator) for shape in shapes]
    theirs = [p.clone().requires_grad_() for p in ours]
    adam = optim.Adam(ours, lr=0.01, weight_decay=weight_decay)
    reference = torch.optim.Adam(theirs, lr=0.01, weight_decay=weight_decay, fused=True)
    touched = [[3, 7, 8, 30], [31, 2, 7, 2], []]  # sorted; unsorted with a repeat; none
    for step in range(6):
        for p, q in zip(ours, theirs):
            q.grad = torch.randn(q.shape, generator=generator)
            p.grad = q.grad.clone()
        if step < len(touched):  # the 2-D parameter's gradient, sparse: zero elsewhere
            dense = ours[0].grad
            ours[0].grad = sparse_rows(dense, touched[step])
            theirs[0].grad = ours[0].grad.to_dense()
            assert theirs[0].grad.count_nonzero() < dense.count_nonzero()
        adam.step()
        reference.step()
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p, q.detach(), rtol=1e-6, atol=1e-7)
    assert all(state["step"] == 6 for state in adam.state)


def test_adam_leaves_parameters_without_gradients_alone():
    p, q = torch.ones(3, 2), torch.ones(4)
    adam = optim.Adam([p, q])
    q.grad = torch.ones(4)
    adam.step()
    assert (p == 1).all() and (q < 1).all()
    assert [state["step"] for state in adam.state] == [0, 1]


def test_adam_refuses_what_it_cannot_update():
    with pytest.raises(TypeError, match="float32"):
        optim.Adam([torch.zeros(3, dtype=torch.float64)])
    p = torch.zeros(2, 3, 4)
    adam = optim.Adam([p])
    p.grad = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.ones(1, 4), (2, 3, 4),
                                     check_invariants=True)
    with pytest.raises(TypeError, match="sparse gradients of whole rows"):
        adam.step()


def test_model_trained_on_sparse_gradients_ends_where_torch_adam_on_dense_ones_does():
    matrix = scipy.sparse.random(48, 200, density=0.05, format="csr", random_state=2,
                                 dtype="float32")
    matrix.data = (matrix.data * 5).round() + 1
    targets = torch.from_numpy(np.random.default_rng(0).integers(0, 4, 48))
    inputs = [torch.from_numpy(matrix.indices), torch.from_numpy(matrix.indptr[:-1]),
              torch.from_numpy(matrix.data)]
    models = []
    for sparse in (True, False):
        torch.manual_seed(0)
        model = RecurrentClassifier("gru", 200, 4, hidden_size=8)
        model.sparse_input_grad = sparse
        adam = (optim.Adam(model.parameters(), lr=0.01) if sparse else
                torch.optim.Adam(model.parameters(), lr=0.01, fused=True))
        for start in range(0, 48, 16):  # three batches, each touching some rows only
            rows = slice(start, start + 16)
            batch = matrix[rows]
            adam.zero_grad()
            F.cross_entropy(model(torch.from_numpy(batch.indices), torch.from_numpy(batch.indptr[:-1]),
                                  torch.from_numpy(batch.data)), targets[rows]).backward()
            assert model.input_weight.grad.is_sparse == sparse
            adam.step()
        models.append(model)
    with torch.no_grad():
        torch.testing.assert_close(models[0](*inputs), models[1](*inputs), rtol=1e-5, atol=1e-6)
    for (name, ours), theirs in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)
