"""Sequence input: ragged storage, the sequence vocabulary, and a model whose batched
(packed or padded) outputs equal torch's own RNNs run on each sequence alone."""
import numpy as np
import pytest
import torch
from torch import nn

from stages.batches import SequenceBatches
from stages.sequence_model import RNN_MODULES, SequenceClassifier
from stages.ragged import Ragged, load, save


def test_ragged_round_trips_without_padding(tmp_path):
    rows = [[5, 1, 9], [], [7], list(range(40))]
    ragged = Ragged.from_rows(rows)
    save(tmp_path / "seq.npz", ragged)
    with np.load(tmp_path / "seq.npz") as npz:
        assert sorted(npz.files) == ["offsets", "values"]
        assert npz["values"].dtype == np.int32 and len(npz["values"]) == sum(map(len, rows))
        assert npz["offsets"].tolist() == [0, 3, 3, 4, 44]
    loaded = load(tmp_path / "seq.npz")
    assert [loaded[i].tolist() for i in range(len(loaded))] == rows
    assert [r.tolist() for r in (loaded.take([3, 1, 0])[i] for i in range(3))] == [rows[3], [], rows[0]]


def test_broken_ragged_file_is_a_one_line_error(tmp_path):
    from stages.errors import PipelineError

    np.savez(tmp_path / "bad.npz", values=np.arange(3, dtype=np.int32),
             offsets=np.array([0, 5], dtype=np.int64))
    with pytest.raises(PipelineError, match="dvc repro"):
        load(tmp_path / "bad.npz")
    with pytest.raises(PipelineError, match="vocabulary"):
        Ragged.from_rows([[1, 12]]).check("x", vocab_size=10)


def test_encode_keeps_document_order_with_the_vectorizers_words():
    from sklearn.feature_extraction.text import CountVectorizer

    from stages.sequences import encode, word_analyzer

    texts = ["the puck the goalie", "orbit rocket the orbit", "Rare GOALIE word"]
    vectorizer = CountVectorizer(max_features=5, token_pattern=r"\b\w+\b",
                                 ngram_range=(1, 2)).fit(texts)
    vocabulary = ["goalie", "orbit", "the"]
    ragged = encode(word_analyzer(vectorizer), vocabulary, ["The goalie, the unseen orbit!", ""])
    assert ragged[0].tolist() == [2, 0, 2, 1] and len(ragged[1]) == 0


def test_the_sequence_vocabulary_counts_documents_not_occurrences():
    from stages.sequences import fit_vocabulary

    texts = ["b a a a a", "b c", "c d", "e"]
    analyze = str.split
    assert fit_vocabulary(analyze, texts, min_df=1) == ["a", "b", "c", "d", "e"]
    assert fit_vocabulary(analyze, texts, min_df=2) == ["b", "c"]
    # "a" occurs most, but in one document; ties (b, c: two documents each) go alphabetically
    assert fit_vocabulary(analyze, texts, min_df=1, max_features=1) == ["b"]
    assert fit_vocabulary(analyze, texts, min_df=1, max_features=3) == ["a", "b", "c"]


def test_batches_truncate_pad_and_keep_empty_rows():
    ragged = Ragged.from_rows([[1, 2, 3, 4, 5], [6], []])
    batches = SequenceBatches(ragged, [0, 1, 2], 8, torch.device("cpu"), max_length=3, pad_index=99)
    ((ids, lengths), targets), = list(batches)
    assert ids.tolist() == [[1, 2, 3], [6, 99, 99], [99, 99, 99]]
    assert lengths.tolist() == [3, 1, 1] and targets.tolist() == [0, 1, 2]


def torch_reference(model, cell, layers, bidirectional):
    """One nn.RNN/LSTM/GRU holding the model's weights, laid out as PyTorch names them."""
    reference = RNN_MODULES[cell](model.embedding.embedding_dim, model.layers[0][0].hidden_size,
                                  layers, batch_first=True, bidirectional=bidirectional).double()
    with torch.no_grad():
        for layer, directions in enumerate(model.layers):
            for direction, rnn in enumerate(directions):
                for name, param in rnn.named_parameters():
                    target = name.replace("_l0", f"_l{layer}") + ("_reverse" if direction else "")
                    getattr(reference, target).copy_(param)
    return reference


def one_by_one(model, reference, rows, pooling):
    """The logits of each sequence run alone, unpadded, through the torch module."""
    logits = []
    for row in rows:
        ids = torch.tensor(row[:model.max_length] or [model.pad_index]).unsqueeze(0)
        output, state = reference(model.embedding(ids))
        if pooling == "last":
            final = state[0] if isinstance(state, tuple) else state
            directions = 2 if reference.bidirectional else 1
            pooled = final[-directions:].transpose(0, 1).reshape(1, -1)
        else:
            pooled = output.mean(1) if pooling == "mean" else output.amax(1)
        logits.append(model.head(pooled))
    return torch.cat(logits)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("packed", [True, False])
def test_batched_outputs_equal_each_sequence_alone(cell, layers, bidirectional, pooling, packed):
    torch.manual_seed(0)
    vocab = 50
    model = SequenceClassifier(cell, vocab, 4, embedding_dim=6, hidden_size=5, num_layers=layers,
                               bidirectional=bidirectional, pooling=pooling, max_length=9).double()
    model.packed = packed
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, vocab, n).tolist() for n in (7, 1, 12, 0, 3, 9)]  # truncated, empty
    batches = SequenceBatches(Ragged.from_rows(rows), np.zeros(len(rows)), 4,
                              torch.device("cpu"), model.max_length, model.pad_index)
    batched = torch.cat([model(*inputs) for inputs, _ in batches])
    expected = one_by_one(model, torch_reference(model, cell, layers, bidirectional), rows, pooling)
    torch.testing.assert_close(batched, expected)


def test_packed_and_padded_give_the_same_gradients():
    torch.manual_seed(0)
    rows = [[1, 2, 3, 4, 5, 6], [7, 8], [], [9, 10, 11]]
    grads = []
    for packed in (True, False):
        torch.manual_seed(0)
        model = SequenceClassifier("lstm", 20, 3, embedding_dim=4, hidden_size=3, num_layers=2,
                                   bidirectional=True, pooling="max").double()
        model.packed = packed
        ((ids, lengths), _), = SequenceBatches(Ragged.from_rows(rows), np.zeros(4), 8,
                                               torch.device("cpu"), 10, model.pad_index)
        nn.functional.cross_entropy(model(ids, lengths), torch.tensor([0, 1, 2, 0])).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)
