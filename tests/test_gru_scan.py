"""The CPU GRU layer (stages/gru_scan.py) computes what nn.GRU computes, outputs and gradients."""
import pytest
import torch
from torch import nn

from stages.gru_scan import gru_layer, usable
from stages.sequence_model import SequenceClassifier


@pytest.mark.parametrize("steps", [1, 2, 37])
def test_outputs_and_every_gradient_equal_nn_gru(steps):
    torch.manual_seed(steps)
    gru = nn.GRU(6, 5)  # time-major, as the sequence models run it
    x = torch.randn(steps, 4, 6, requires_grad=True)
    expected = gru(x)[0]
    actual = gru_layer(gru, x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(expected)  # every output's gradient different
    inputs = [x, *gru.parameters()]
    for ours, theirs in zip(torch.autograd.grad((actual * weights).sum(), inputs),
                            torch.autograd.grad((expected * weights).sum(), inputs)):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_sequence_models_take_it_on_the_cpu_and_only_where_it_computes_the_same():
    torch.manual_seed(0)
    ids, lengths = torch.randint(0, 20, (3, 7)), torch.tensor([7, 4, 1])
    for cell, scanned in (("gru", True), ("lstm", False), ("rnn", False)):
        model = SequenceClassifier(cell, 20, 2, embedding_dim=4, hidden_size=3, pooling="max")
        graph, names = [model(ids, lengths).sum().grad_fn], set()
        while graph:  # every node of the backward graph
            node = graph.pop()
            names.add(type(node).__name__)
            graph += [next_node for next_node, _ in node.next_functions if next_node is not None]
        assert ("GRUScanBackward" in names) == scanned, cell
    gru, x = nn.GRU(4, 3), torch.randn(5, 2, 4)
    assert usable(gru, x)
    assert not usable(gru, x.double())
    assert not usable(nn.GRU(4, 3, batch_first=True), x)
    assert not usable(nn.GRU(4, 3, num_layers=2), x)
    assert not usable(nn.GRU(4, 3, bidirectional=True), x)
