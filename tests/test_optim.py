"""stages/optim.py's Adam takes the steps torch.optim.Adam takes, from dense gradients and from
sparse ones (as dense gradients with zero rows), and the bag-of-words model trained with it on
sparse gradients ends where torch's Adam on dense gradients ends.  LazyAdam takes
torch.optim.SparseAdam's steps on the rows a sparse gradient holds and leaves every other row,
and its moments, exactly as they were."""
import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

from stages import optim
from stages.distributed import Group
from stages.errors import PipelineError
from stages.model import RecurrentClassifier
from stages.sequence_model import SequenceClassifier
from stages.params import validate
from stages.steps import clip_gradients
from stages.train import make_optimizer


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


def test_lazy_adam_steps_only_the_touched_rows_as_sparse_adam_does():
    generator = torch.Generator().manual_seed(0)
    # eps out of the way: SparseAdam adds it before the bias correction, Adam (and ours) after.
    settings = dict(lr=0.01, eps=1e-12)
    matrix, bias = torch.randn(40, 6, generator=generator), torch.randn(6, generator=generator)
    their_matrix, their_bias = matrix.clone(), bias.clone().requires_grad_()
    lazy = optim.LazyAdam([matrix, bias], **settings)
    sparse_reference = torch.optim.SparseAdam([their_matrix], **settings)
    dense_reference = torch.optim.Adam([their_bias], fused=True, **settings)
    # Different rows each step, unsorted with a repeat, a row touched once early and never again.
    touched = [[3, 7, 8, 30], [31, 2, 7, 2], [0, 39], [7, 8, 9, 10, 11], [5]]
    ever_touched = set()
    for rows in touched:
        dense = torch.randn(40, 6, generator=generator)
        matrix.grad = sparse_rows(dense, rows)
        their_matrix.grad = matrix.grad.clone()
        bias.grad = torch.randn(6, generator=generator)
        their_bias.grad = bias.grad.clone()
        state = lazy.state[0]
        before = [t.clone() for t in (matrix, state["exp_avg"], state["exp_avg_sq"])]
        lazy.step()
        sparse_reference.step()
        dense_reference.step()
        torch.testing.assert_close(matrix, their_matrix, rtol=1e-6, atol=1e-7)
        reference_state = sparse_reference.state[their_matrix]
        torch.testing.assert_close(lazy.state[0]["exp_avg"], reference_state["exp_avg"])
        torch.testing.assert_close(lazy.state[0]["exp_avg_sq"], reference_state["exp_avg_sq"])
        torch.testing.assert_close(bias, their_bias.detach(), rtol=1e-6, atol=1e-7)
        ever_touched.update(rows)
        untouched = [row for row in range(40) if row not in rows]
        for old, new in zip(before, (matrix, state["exp_avg"], state["exp_avg_sq"])):
            assert torch.equal(new[untouched], old[untouched])  # bit for bit
            assert (new[rows] != old[rows]).all()
    never = [row for row in range(40) if row not in ever_touched]
    assert (state["exp_avg"][never] == 0).all() and (state["exp_avg_sq"][never] == 0).all()
    assert all(state["step"] == len(touched) for state in lazy.state)


def test_training_with_lazy_adam_moves_only_the_rows_of_each_batchs_words():
    matrix = scipy.sparse.random(32, 300, density=0.02, format="csr", random_state=3,
                                 dtype="float32")
    targets = torch.from_numpy(np.random.default_rng(0).integers(0, 4, 32))
    model = RecurrentClassifier("lstm", 300, 4, hidden_size=8)
    adam = make_optimizer(model, dict(validate({})["train"], optimizer="lazy_adam"), Group())
    assert isinstance(adam, optim.LazyAdam) and model.sparse_input_grad
    seen = np.zeros(300, bool)
    for start in range(0, 32, 8):
        batch = matrix[start:start + 8]
        before = model.input_weight.detach().clone()
        adam.zero_grad()
        F.cross_entropy(model(torch.from_numpy(batch.indices), torch.from_numpy(batch.indptr[:-1]),
                              torch.from_numpy(batch.data)), targets[start:start + 8]).backward()
        adam.step()
        in_batch = np.unique(batch.indices)
        # Rows of earlier batches carry momentum: dense Adam would move them again.
        elsewhere = np.flatnonzero(seen & ~np.isin(np.arange(300), in_batch))
        assert start == 0 or len(elsewhere)
        assert torch.equal(model.input_weight[elsewhere], before[elsewhere])
        # (any: the LSTM's forget gate acts on a zero cell state and never learns)
        assert (model.input_weight[in_batch] != before[in_batch]).any(1).all()
        seen[in_batch] = True


def test_the_default_optimizer_is_the_seeds_adam():
    model = RecurrentClassifier("gru", 50, 3, hidden_size=4)
    adam = make_optimizer(model, validate({})["train"], Group())
    assert type(adam) is optim.Adam


@pytest.mark.parametrize("case, message", [
    ("processes", "not on cpu in 2 processes"),
    ("weight_decay", "takes no weight decay"),
])
def test_lazy_adam_refuses_what_it_cannot_do_in_one_line(case, message):
    p = dict(validate({})["train"], optimizer="lazy_adam")
    model, group = RecurrentClassifier("gru", 50, 3, hidden_size=4), Group()
    if case == "processes":
        group = Group(world_size=2)
    else:
        p["weight_decay"] = 0.01
    with pytest.raises(PipelineError, match=message) as error:
        make_optimizer(model, p, group)
    assert "\n" not in str(error.value)


def test_a_sequence_models_embedding_steps_only_the_words_of_its_batch():
    """lazy_adam on a sequence model: the embedding's gradient is sparse, and a step moves
    the rows of the batch's words and nothing else; clipping scales it as the dense one."""
    torch.manual_seed(0)
    model = SequenceClassifier("gru", 50, 3, embedding_dim=4, hidden_size=4, pooling="max")
    reference = SequenceClassifier("gru", 50, 3, embedding_dim=4, hidden_size=4, pooling="max")
    reference.load_state_dict(model.state_dict())
    lazy = make_optimizer(model, dict(validate({})["train"], optimizer="lazy_adam"), Group())
    assert type(lazy) is optim.LazyAdam and model.embedding.sparse
    ids, lengths = torch.tensor([[3, 7, 3, 9], [7, 11, 50, 50]]), torch.tensor([4, 2])
    targets, before = torch.tensor([0, 2]), model.embedding.weight.detach().clone()
    for net in (model, reference):
        F.cross_entropy(net(ids, lengths), targets).backward()
    assert model.embedding.weight.grad.is_sparse
    clip_gradients(model.parameters(), 1e-3)
    clip_gradients(reference.parameters(), 1e-3)
    torch.testing.assert_close(model.embedding.weight.grad.to_dense(), reference.embedding.weight.grad)
    lazy.step()
    moved = (model.embedding.weight != before).any(1)
    assert moved.nonzero().flatten().tolist() == [3, 7, 9, 11]  # 50 is padding: no gradient


def test_params_name_the_optimizers():
    assert validate({})["train"]["optimizer"] == "adam"
    with pytest.raises(PipelineError, match="train.optimizer must be one of adam, lazy_adam"):
        validate({"train": {"optimizer": "sparse_adam"}})
