"""vectorize: data/split/*.parquet → sparse CSR features, labels and the fitted vectorizer.

Fitted on the train split only.  The default is the seed's
``CountVectorizer(max_features=10000, token_pattern=r'\\b\\w+\\b')``, with ties at the vocabulary's
cut broken the same way on every machine (see fit_terms); ``weighting`` switches to
binary presence or sublinear tf-idf, ``header_fields`` adds header words as terms of their
own, and ``char_ngram_range`` a second block of character n-grams (stages/terms.py).  Matrices
are float32 CSR (``scipy.sparse.save_npz``), never densified.
"""
import argparse
import sys

import numpy as np

from stages import params
from stages.errors import PipelineError, run_stage
from stages.files import atomic_path, read_parquet, save_csr, write_json
from stages.paths import FEATURES, FEATURES_META, LABELS, SPLIT_TEST, SPLIT_TRAIN, VECTORIZER
from stages.terms import blocks, char_options, vectorizer_options


def fit_vectorizer(p, texts):
    """(fitted vectorizer, train matrix) for the ``vectorize`` params.

    With ``char_ngram_range`` the features are two blocks side by side, the words' and the
    character n-grams', each fitted (and, for tf-idf, normalised) on its own with the same
    settings: one norm over both would leave the few hundred words of a message a small share
    of its thousands of character n-grams.  The fitted vectorizer is then a FeatureUnion.
    """
    from scipy import sparse
    from sklearn.pipeline import FeatureUnion

    words, train_x = fit_terms(p, texts, vectorizer_options(p))
    if not p["char_ngram_range"]:
        return words, train_x
    chars, char_x = fit_terms(p, texts, char_options(p))
    return (FeatureUnion([("words", words), ("chars", chars)]),
            sparse.hstack([train_x, char_x], format="csr", dtype=np.float32))


def fit_terms(p, texts, options):
    """(fitted vectorizer, train matrix) over the terms ``options`` make, reading ``texts`` once.

    The vocabulary is scikit-learn's (terms within min_df/max_df, the ``max_features`` most
    frequent) except among terms of equal frequency at the cut, where the alphabetically first
    are kept.  scikit-learn breaks those ties with numpy's unstable argsort, whose order depends
    on the CPU's vector instructions (AVX2, AVX-512): on the real corpus, where 200 terms tie for
    the last 193 places, one reference run's vocabulary did not reproduce on another machine.
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer

    tokens = dict(options, dtype=np.float32)
    binary = p["weighting"] == "binary"
    counter = CountVectorizer(binary=binary, min_df=p["min_df"], max_df=p["max_df"], **tokens)
    counts = counter.fit_transform(texts)
    terms = counter.get_feature_names_out()
    if p["max_features"] and len(terms) > p["max_features"]:
        frequencies = counts.sum(axis=0, dtype=np.int64).A1
        kept = np.sort(np.argsort(-frequencies, kind="stable")[:p["max_features"]])
        counts, terms = counts[:, kept], terms[kept]
    if p["weighting"] == "tfidf":
        tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        vectorizer = TfidfVectorizer(vocabulary=terms, sublinear_tf=True, **tokens)
        vectorizer.idf_ = tfidf.idf_
        return vectorizer, tfidf.transform(counts)
    # A fixed vocabulary needs no texts to fit.
    return CountVectorizer(vocabulary=terms, binary=binary, **tokens).fit([]), counts


def main(argv):
    argparse.ArgumentParser(prog="python -m stages.vectorize", description=__doc__.split("\n")[0]).parse_args(argv)
    import joblib

    p = params.load("vectorize")
    train = read_parquet(SPLIT_TRAIN, ["text", "label", "newsgroup"])
    test = read_parquet(SPLIT_TEST, ["text", "label", "newsgroup"])
    # scikit-learn fits in one call, with nothing to report until it ends (about 10 s here).
    print(f"vectorize: fitting the vocabulary on {len(train)} train documents, then "
          f"transforming {len(test)} test documents", file=sys.stderr, flush=True)
    try:
        vectorizer, train_x = fit_vectorizer(p, train["text"].to_pylist())
    except ValueError as exc:  # empty vocabulary, min_df above max_df, ...
        raise PipelineError(f"params.yaml: vectorize settings leave no usable vocabulary: {exc}") from None
    test_x = vectorizer.transform(test["text"].to_pylist())

    classes = {}
    for table in (train, test):
        classes.update(zip(table["label"].to_pylist(), table["newsgroup"].to_pylist()))
    save_csr(FEATURES["train"], train_x)
    save_csr(FEATURES["test"], test_x)
    with atomic_path(LABELS) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, train=train["label"].to_numpy(), test=test["label"].to_numpy())
    # scikit-learn caches id(stop_words) to skip a repeated check; the id differs per process
    # and would make the pickle (and its DVC hash) differ on every run.
    for block in blocks(vectorizer):
        vars(block).pop("_stop_words_id", None)
    with atomic_path(VECTORIZER) as tmp:
        joblib.dump(vectorizer, tmp)
    write_json(FEATURES_META, {"classes": [classes[i] for i in sorted(classes)],
                      "n_features": train_x.shape[1]})
    print(f"vectorize ({p['weighting']}): {train_x.shape[0]} train × {train_x.shape[1]} features, "
          f"{train_x.nnz / max(train_x.shape[0], 1):.0f} non-zeros per document", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
