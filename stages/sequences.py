"""sequences: data/split/*.parquet + the fitted vectorizer → token ids in document order.

For the models with ``input: sequence``.  Each document becomes the ids of its words, in
order.  The words are the vectorizer's (its preprocessing, token pattern and lowercasing;
single words even where ``vectorize.ngram_range`` adds n-grams or ``header_fields`` header
terms: stages/terms.py), but the vocabulary is the sequence models' own (``sequences`` in
params.yaml): every word of at least ``min_df`` train documents, or the ``max_features`` of
them in the most documents — not the bag of words'
10,000 terms, because a sequence model reads each word through an embedding row whose
gradient costs only the words a batch holds (stages/train.py, make_optimizer).  Ids follow
the words' alphabetical order (data/sequences/vocabulary.json); words outside the vocabulary
are dropped.  Sequences are stored whole, as ragged arrays (values + offsets, never padded);
each model truncates them to its own ``max_length`` when it batches them, so changing one
model's length reruns that model only.
"""
import argparse
import sys
from collections import Counter

import numpy as np

from stages import params
from stages.errors import PipelineError, run_stage
from stages.files import load_vectorizer, read_parquet, write_json
from stages.paths import SEQUENCE_VOCABULARY, SEQUENCES, SPLIT_TEST, SPLIT_TRAIN
from stages.progress import Progress
from stages.ragged import Ragged, save
from stages.terms import word_analyzer


def fit_vocabulary(analyze, texts, min_df, max_features=None, label=None):
    """The words of at least ``min_df`` of ``texts`` (with ``max_features``, the most
    frequent of them by document count, ties broken alphabetically), sorted."""
    document_counts = Counter()
    progress = Progress(len(texts), label, unit="documents", enabled=label is not None)
    for text in texts:
        document_counts.update(set(analyze(text)))
        progress.update()
    progress.close()
    words = [word for word, count in document_counts.items() if count >= min_df]
    if max_features is not None:
        words = sorted(words, key=lambda word: (-document_counts[word], word))[:max_features]
    return sorted(words)


def tokenizer(analyze, vocabulary):
    """A function text → array of ids in ``vocabulary`` (a list of words), in document order
    (unknown words dropped)."""
    ids = {word: i for i, word in enumerate(vocabulary)}

    def encode(text):
        found = [ids.get(word) for word in analyze(text)]
        return np.fromiter((i for i in found if i is not None), dtype=np.int32)
    return encode


def encode(analyze, vocabulary, texts, label=None):
    """Ragged token ids of ``texts``; with a ``label``, progress is shown under it."""
    encode_one = tokenizer(analyze, vocabulary)
    progress = Progress(len(texts), label, unit="documents", enabled=label is not None)
    rows = []
    for text in texts:
        rows.append(encode_one(text))
        progress.update()
    progress.close()
    return Ragged.from_rows(rows)


def main(argv):
    argparse.ArgumentParser(prog="python -m stages.sequences", description=__doc__.split("\n")[0]).parse_args(argv)
    p = params.load("sequences")
    analyze = word_analyzer(load_vectorizer())
    texts = {subset: read_parquet(path, ["text"])["text"].to_pylist()
             for subset, path in (("train", SPLIT_TRAIN), ("test", SPLIT_TEST))}
    vocabulary = fit_vocabulary(analyze, texts["train"], p["min_df"], p["max_features"],
                                label="sequences vocabulary")
    if not vocabulary:
        raise PipelineError(f"params.yaml: no word is in {p['min_df']} or more train documents; "
                            "lower sequences.min_df")
    print(f"sequences: {len(vocabulary)} words in at least {p['min_df']} train documents"
          + (f" (at most {p['max_features']})" if p["max_features"] else ""), file=sys.stderr)
    for subset, subset_texts in texts.items():
        sequences = encode(analyze, vocabulary, subset_texts, label=f"sequences {subset}")
        save(SEQUENCES[subset], sequences)
        lengths = sequences.lengths
        print(f"sequences {subset}: {len(sequences)} documents, {len(sequences.values)} tokens, "
              f"length median {np.median(lengths):.0f}, 90th percentile "
              f"{np.percentile(lengths, 90):.0f}, max {lengths.max()}, "
              f"{np.sum(lengths == 0)} empty", file=sys.stderr)
    write_json(SEQUENCE_VOCABULARY, vocabulary)


if __name__ == "__main__":
    run_stage(main)
