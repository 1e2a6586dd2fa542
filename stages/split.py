"""split: data/corpus.parquet → data/split/{train,test}.parquet.

``strategy: random`` reproduces the seed exactly: ``train_test_split(texts, labels,
test_size=0.2, random_state=2024)`` over the corpus in scikit-learn's order, keeping the
seed's row order in both parts.  ``strategy: bydate`` keeps the corpus's own train/test
subsets, the standard 20 Newsgroups benchmark split.
"""
import argparse
import sys

import numpy as np

from stages import params
from stages.errors import PipelineError, run_stage
from stages.files import read_parquet, write_parquet
from stages.paths import CORPUS, SPLIT_TEST, SPLIT_TRAIN


def split_indices(subsets, labels, p):
    """Row indices of the train and test parts."""
    if p["strategy"] == "bydate":
        subsets = np.asarray(subsets)
        return np.flatnonzero(subsets == "train"), np.flatnonzero(subsets == "test")
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(labels)), test_size=p["test_size"],
                                random_state=p["seed"],
                                stratify=labels if p["stratify"] else None)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: split.test_size={p['test_size']} cannot split "
                            f"{len(labels)} documents: {exc}") from None


def main(argv):
    argparse.ArgumentParser(prog="python -m stages.split", description=__doc__.split("\n")[0]).parse_args(argv)
    p = params.load("split")
    corpus = read_parquet(CORPUS)
    train_idx, test_idx = split_indices(corpus["subset"].to_pylist(),
                                        corpus["label"].to_numpy(), p)
    write_parquet(SPLIT_TRAIN, corpus.take(train_idx))
    write_parquet(SPLIT_TEST, corpus.take(test_idx))
    print(f"split ({p['strategy']}): {len(train_idx)} train / {len(test_idx)} test", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
