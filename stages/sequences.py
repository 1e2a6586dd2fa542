"""sequences: data/split/*.parquet + the fitted vectorizer → token ids in document order.

For the models with ``input: sequence``.  Each document becomes the ids of its words, in
order, in the vocabulary of vectorize (``vectorizer.vocabulary_``, tokenised by the
vectorizer's own preprocessing, tokenizer and lowercasing); words outside the vocabulary are
dropped.  With ``vectorize.ngram_range`` above unigrams only the vocabulary's single words
form the sequence.  Sequences are stored whole, as ragged arrays (values + offsets, never
padded); each model truncates them to its own ``max_length`` when it batches them, so
changing one model's length reruns that model only.
"""
import argparse
import copy
import sys

import numpy as np

from stages.errors import run_stage
from stages.files import load_vectorizer, read_parquet
from stages.paths import SEQUENCES, SPLIT_TEST, SPLIT_TRAIN
from stages.progress import Progress
from stages.ragged import Ragged, save


def tokenizer(vectorizer):
    """A function text → array of vocabulary ids, in document order (unknown words dropped)."""
    unigrams = copy.copy(vectorizer)
    unigrams.ngram_range = (1, 1)
    analyze = unigrams.build_analyzer()
    vocabulary = vectorizer.vocabulary_

    def encode(text):
        ids = [vocabulary.get(token) for token in analyze(text)]
        return np.fromiter((i for i in ids if i is not None), dtype=np.int32)
    return encode


def encode(vectorizer, texts, label=None):
    """Ragged token ids of ``texts``; with a ``label``, progress is shown under it."""
    encode_one = tokenizer(vectorizer)
    progress = Progress(len(texts), label, unit="documents", enabled=label is not None)
    rows = []
    for text in texts:
        rows.append(encode_one(text))
        progress.update()
    progress.close()
    return Ragged.from_rows(rows)


def main(argv):
    argparse.ArgumentParser(prog="python -m stages.sequences", description=__doc__.split("\n")[0]).parse_args(argv)
    vectorizer = load_vectorizer()
    for subset, path in (("train", SPLIT_TRAIN), ("test", SPLIT_TEST)):
        sequences = encode(vectorizer, read_parquet(path, ["text"])["text"].to_pylist(),
                           label=f"sequences {subset}")
        save(SEQUENCES[subset], sequences)
        lengths = sequences.lengths
        print(f"sequences {subset}: {len(sequences)} documents, {len(sequences.values)} tokens, "
              f"length median {np.median(lengths):.0f}, 90th percentile "
              f"{np.percentile(lengths, 90):.0f}, max {lengths.max()}, "
              f"{np.sum(lengths == 0)} empty", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
