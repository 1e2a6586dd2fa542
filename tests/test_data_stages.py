"""fetch → split → vectorize on the tiny archive, checked against scikit-learn itself."""
import codecs
import json
import pickle
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse
from conftest import MESSAGES_PER_GROUP, TOPICS, Project


def sklearn_newsgroups(archive, home, **kwargs):
    """fetch_20newsgroups(subset="all") over ``archive``, via the cache sklearn itself builds."""
    from sklearn.datasets import fetch_20newsgroups, load_files
    from sklearn.datasets._base import _pkl_filepath

    extracted = home / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    cache = {subset: load_files(extracted / f"20news-bydate-{subset}", encoding="latin1")
             for subset in ("train", "test")}
    with open(_pkl_filepath(str(home), "20news-bydate.pkz"), "wb") as f:
        f.write(codecs.encode(pickle.dumps(cache), "zlib_codec"))
    return fetch_20newsgroups(subset="all", data_home=str(home), download_if_missing=False, **kwargs)


def archive_ids(bunch):
    return ["/".join(name.split("/")[-3:]) for name in bunch.filenames]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, tiny_archive):
    project = Project(tmp_path_factory.mktemp("fetched") / "repo", tiny_archive)
    for stage in ("fetch", "split", "vectorize"):
        project.stage(stage)
    return project


def test_fetch_matches_scikit_learn_order_text_and_labels(fetched, tiny_archive, tmp_path):
    corpus = pq.read_table(fetched.path / "data/corpus.parquet").to_pydict()
    expected = sklearn_newsgroups(tiny_archive, tmp_path)
    total = len(TOPICS) * sum(MESSAGES_PER_GROUP.values())
    assert len(corpus["id"]) == total
    assert corpus["id"] == archive_ids(expected)
    assert corpus["text"] == expected.data
    assert corpus["label"] == expected.target.tolist()
    assert [expected.target_names[i] for i in corpus["label"]] == corpus["newsgroup"]
    assert corpus["subset"] == [i.split("/")[0].split("-")[-1] for i in corpus["id"]]
    assert any("café" in text for text in corpus["text"])  # latin-1 decoded
    assert any("\r\n" in text for text in corpus["text"])  # CRLF kept as in the archive


def test_fetch_strip_and_categories_match_scikit_learn(project, tiny_archive, tmp_path):
    categories = ["sci.space", "comp.graphics"]
    project.edit_params("fetch.remove", ["headers", "footers", "quotes"])
    project.edit_params("fetch.categories", categories)
    project.stage("fetch")
    corpus = pq.read_table(project.path / "data/corpus.parquet").to_pydict()
    expected = sklearn_newsgroups(tiny_archive, tmp_path, categories=categories,
                                  remove=("headers", "footers", "quotes"))
    assert corpus["id"] == archive_ids(expected)
    assert corpus["text"] == expected.data
    assert corpus["label"] == expected.target.tolist()
    assert not any(text.startswith("From:") for text in corpus["text"])


def test_random_split_is_the_seeds_train_test_split(fetched, tiny_archive, tmp_path):
    from sklearn.model_selection import train_test_split

    expected = sklearn_newsgroups(tiny_archive, tmp_path)
    _, _, _, _, train_ids, test_ids = train_test_split(
        expected.data, expected.target, archive_ids(expected), test_size=0.2, random_state=2024)
    train = pq.read_table(fetched.path / "data/split/train.parquet")
    test = pq.read_table(fetched.path / "data/split/test.parquet")
    assert train["id"].to_pylist() == train_ids
    assert test["id"].to_pylist() == test_ids


def test_bydate_and_stratified_splits(project):
    project.stage("fetch")
    project.edit_params("split.strategy", "bydate")
    project.stage("split")
    test = pq.read_table(project.path / "data/split/test.parquet").to_pydict()
    assert set(test["subset"]) == {"test"}
    assert len(test["id"]) == len(TOPICS) * MESSAGES_PER_GROUP["test"]

    project.edit_params("split.strategy", "random")
    project.edit_params("split.stratify", True)
    project.edit_params("split.test_size", 0.25)
    project.stage("split")
    labels = pq.read_table(project.path / "data/split/test.parquet")["label"].to_numpy()
    counts = np.bincount(labels)
    assert counts.max() - counts.min() <= 1  # every newsgroup equally represented


def test_vectorize_writes_csr_fitted_on_train_only(fetched):
    import joblib
    from sklearn.feature_extraction.text import CountVectorizer

    features = fetched.path / "data/features"
    train_x = scipy.sparse.load_npz(features / "train.npz")
    test_x = scipy.sparse.load_npz(features / "test.npz")
    assert scipy.sparse.isspmatrix_csr(train_x) or train_x.format == "csr"
    train_text = pq.read_table(fetched.path / "data/split/train.parquet")["text"].to_pylist()
    test_text = pq.read_table(fetched.path / "data/split/test.parquet")["text"].to_pylist()
    seed = CountVectorizer(max_features=10000, token_pattern=r"\b\w+\b")
    expected_train = seed.fit_transform(train_text)
    assert (train_x != expected_train).nnz == 0
    assert (test_x != seed.transform(test_text)).nnz == 0
    vectorizer = joblib.load(features / "vectorizer.joblib")
    assert vectorizer.vocabulary_ == seed.vocabulary_
    with np.load(features / "labels.npz") as labels:
        assert len(labels["train"]) == train_x.shape[0] and len(labels["test"]) == test_x.shape[0]


@pytest.mark.parametrize("weighting", ["count", "binary", "tfidf"])
def test_vocabulary_cut_keeps_the_alphabetically_first_of_tied_terms(weighting):
    """3,000 terms with counts 1-5 cut to 1,000: scikit-learn's unstable argsort keeps a
    CPU-dependent choice among the tied terms (141 differ on an AVX2 machine); ours is fixed."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    from stages.params import validate
    from stages.vectorize import fit_vectorizer

    counts = np.random.default_rng(0).integers(1, 6, 3000)
    terms = np.array([f"w{i:04d}" for i in range(len(counts))])
    # Document j holds the terms counted more than j times: a term's count is its document count.
    texts = [" ".join(terms[counts > j]) for j in range(counts.max())]
    p = dict(validate({})["vectorize"], max_features=1000, weighting=weighting)
    vectorizer, matrix = fit_vectorizer(p, texts)

    by_count = sorted(range(len(terms)), key=lambda i: (-counts[i], terms[i]))
    expected = sorted(terms[by_count[:1000]])
    assert list(vectorizer.get_feature_names_out()) == expected
    options = dict(vocabulary=expected, token_pattern=r"\b\w+\b", dtype=np.float32)
    reference = (TfidfVectorizer(sublinear_tf=True, **options) if weighting == "tfidf"
                 else CountVectorizer(binary=weighting == "binary", **options))
    expected_matrix = reference.fit_transform(texts)
    assert abs(matrix - expected_matrix).max() == 0
    assert abs(vectorizer.transform(texts) - expected_matrix).max() == 0


@pytest.mark.parametrize("weighting", ["binary", "tfidf"])
def test_vectorize_weightings(project, weighting):
    for stage in ("fetch", "split"):
        project.stage(stage)
    project.edit_params("vectorize.weighting", weighting)
    project.edit_params("vectorize.ngram_range", [1, 2])
    project.stage("vectorize")
    matrix = scipy.sparse.load_npz(project.path / "data/features/train.npz")
    if weighting == "binary":
        assert set(np.unique(matrix.data)) == {1.0}
    else:  # l2-normalised sublinear tf-idf rows
        norms = np.sqrt(matrix.multiply(matrix).sum(axis=1)).A1
        assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)


MESSAGE = ("From: ann@example.com (Ann)\nSubject: Re: Clipper chip escrow\nLines: 3\n\n"
           "The clipper chip.\nSubject: not a header, in the body\n")


def test_header_terms_add_the_named_fields_words_to_the_texts_own():
    from sklearn.feature_extraction.text import CountVectorizer

    from stages.terms import HeaderTerms

    options = dict(token_pattern=r"\b\w+\b", lowercase=True, ngram_range=(1, 2))
    plain = CountVectorizer(**options).build_analyzer()
    analyzer = HeaderTerms(["Subject"], **options)
    assert analyzer(MESSAGE) == plain(MESSAGE) + ["subject:re", "subject:clipper",
                                                  "subject:chip", "subject:escrow"]
    body = MESSAGE.split("\n\n", 1)[1]  # what fetch.remove: [headers] leaves
    assert analyzer(body) == plain(body)
    assert HeaderTerms(["from", "lines"], **options)(MESSAGE)[len(plain(MESSAGE)):] == [
        "from:ann", "from:example", "from:com", "from:ann", "lines:3"]
    assert analyzer.words(MESSAGE) == CountVectorizer(token_pattern=r"\b\w+\b").build_analyzer()(MESSAGE)


def test_header_fields_vectorizer_pickles_to_the_same_bytes_and_transforms_new_text(project):
    import joblib

    from stages.terms import word_analyzer

    for stage in ("fetch", "split"):
        project.stage(stage)
    project.edit_params("vectorize.header_fields", ["subject"])
    project.edit_params("vectorize.weighting", "tfidf")
    project.stage("vectorize")
    features = project.path / "data/features"
    first = (features / "vectorizer.joblib").read_bytes()
    project.stage("vectorize")
    assert (features / "vectorizer.joblib").read_bytes() == first
    vectorizer = joblib.load(features / "vectorizer.joblib")
    terms = vectorizer.get_feature_names_out()
    assert any(term.startswith("subject:") for term in terms)
    test_text = pq.read_table(project.path / "data/split/test.parquet")["text"].to_pylist()
    test_x = scipy.sparse.load_npz(features / "test.npz")
    assert abs(vectorizer.transform(test_text) - test_x).max() == 0  # as predict would see it
    # The sequence models read the words alone.
    assert not any(":" in word for text in test_text for word in word_analyzer(vectorizer)(text))


def test_header_fields_must_be_header_names(project):
    project.edit_params("vectorize.header_fields", "subject")
    result = project.stage("vectorize", check=False)
    assert result.returncode == 2
    assert "vectorize.header_fields" in result.stderr and "[subject]" in result.stderr


def test_char_ngrams_are_a_second_block_beside_the_unchanged_words(project):
    import joblib

    from stages.terms import word_analyzer

    for stage in ("fetch", "split"):
        project.stage(stage)
    project.edit_params("vectorize.weighting", "tfidf")
    project.edit_params("vectorize.max_features", None)
    features = project.path / "data/features"
    project.stage("vectorize")
    words_x = scipy.sparse.load_npz(features / "train.npz")
    words_vectorizer = joblib.load(features / "vectorizer.joblib")

    project.edit_params("vectorize.char_ngram_range", [2, 4])
    project.stage("vectorize")
    train_x = scipy.sparse.load_npz(features / "train.npz")
    n_words = words_x.shape[1]
    assert train_x.shape[1] > n_words
    assert json.loads((features / "meta.json").read_text())["n_features"] == train_x.shape[1]
    assert abs(train_x[:, :n_words] - words_x).max() == 0
    # Each block is normalised on its own: the words keep their weight beside the n-grams.
    chars = train_x[:, n_words:]
    norms = np.sqrt(chars.multiply(chars).sum(axis=1)).A1
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)

    vectorizer = joblib.load(features / "vectorizer.joblib")
    test_text = pq.read_table(project.path / "data/split/test.parquet")["text"].to_pylist()
    test_x = scipy.sparse.load_npz(features / "test.npz")
    assert abs(vectorizer.transform(test_text) - test_x).max() == 0  # as predict would see it
    assert ([word_analyzer(vectorizer)(text) for text in test_text]
            == [word_analyzer(words_vectorizer)(text) for text in test_text])


def test_char_ngram_range_must_be_a_range(project):
    project.edit_params("vectorize.char_ngram_range", [4, 2])
    result = project.stage("vectorize", check=False)
    assert result.returncode == 2
    assert "vectorize.char_ngram_range" in result.stderr and "min_n <= max_n" in result.stderr
