"""How a message becomes terms: the vectorizer's analyzers.

``vectorize.header_fields`` (default none, the seed's) names header lines whose words also count
as terms of their own, ``subject:clipper`` beside the ``clipper`` of the whole text.  In 20
Newsgroups a Subject names its thread and every reply repeats it, so its words say more about
the newsgroup than the same words in a body; as one term a bag of words can weigh them only
once.  The analyzer is a picklable object, so the fitted vectorizer applies it to new text in
``predict`` as it did in ``vectorize``.

``vectorize.char_ngram_range`` (default none) adds a second block of terms, the character n-grams
within words: where the headers are gone, spellings, word forms and the words a vocabulary cut
drops still carry some evidence.
"""
import copy
import re

from sklearn.feature_extraction.text import CountVectorizer

# "Field: value"; the headers are the lines before the first empty one, as in the corpus.
HEADER_LINE = re.compile(r"([A-Za-z][\w-]*):[ \t]*(.*)")


def header_lines(text):
    """(lowercased field name, value) of each header line of ``text``: the "Field: value"
    lines it starts with, up to the first other line that does not continue one (indented).
    None when the text starts with its body (``fetch.remove: [headers]``)."""
    for line in text.split("\n\n", 1)[0].splitlines():
        match = HEADER_LINE.fullmatch(line)
        if match:
            yield match[1].lower(), match[2]
        elif not line[:1].isspace():
            return


class HeaderTerms:
    """Analyzer: the word n-grams of the text (``token_pattern``, ``lowercase``,
    ``ngram_range``, as CountVectorizer makes them), then each word of the header lines named
    in ``fields`` as ``<field>:<word>``."""

    def __init__(self, fields, token_pattern, lowercase, ngram_range):
        self.fields = tuple(field.lower() for field in fields)
        self.options = {"token_pattern": token_pattern, "lowercase": lowercase,
                        "ngram_range": tuple(ngram_range)}
        self._built = None

    # The built analyzers are functions of the options, rebuilt on first use: the pickle
    # holds only the options, the same bytes on every run (DVC hashes it).
    def __getstate__(self):
        return {"fields": self.fields, "options": self.options}

    def __setstate__(self, state):
        self.__dict__.update(state, _built=None)

    def _analyzers(self):
        if self._built is None:
            words = CountVectorizer(**{**self.options, "ngram_range": (1, 1)}).build_analyzer()
            self._built = CountVectorizer(**self.options).build_analyzer(), words
        return self._built

    def words(self, text):
        """The text's single words, in order, without header terms."""
        return self._analyzers()[1](text)

    def __call__(self, text):
        ngrams, words = self._analyzers()
        terms = ngrams(text)
        for field, value in header_lines(text):
            if field in self.fields:
                terms.extend(f"{field}:{word}" for word in words(value))
        return terms


def vectorizer_options(p):
    """The CountVectorizer/TfidfVectorizer arguments that turn text into terms, for the
    ``vectorize`` params."""
    if p["header_fields"]:
        return {"analyzer": HeaderTerms(p["header_fields"], p["token_pattern"], p["lowercase"],
                                        p["ngram_range"])}
    return {"token_pattern": p["token_pattern"], "lowercase": p["lowercase"],
            "ngram_range": tuple(p["ngram_range"])}


def char_options(p):
    """The vectorizer arguments of the character n-gram block (``char_ngram_range``): n-grams
    within words, each word padded with a space (scikit-learn's ``char_wb``)."""
    return {"analyzer": "char_wb", "lowercase": p["lowercase"],
            "ngram_range": tuple(p["char_ngram_range"])}


def blocks(vectorizer):
    """The fitted vectorizer's blocks of terms: the words' vectorizer, then, with
    ``char_ngram_range``, the character n-grams' (vectorize joins them in a FeatureUnion)."""
    return [part for _, part in getattr(vectorizer, "transformer_list", [(None, vectorizer)])]


def word_analyzer(vectorizer):
    """The fitted vectorizer's analyzer for single words: text → its words, in order (its
    preprocessing, token pattern and lowercasing; no n-grams, no header terms, no characters)."""
    vectorizer = blocks(vectorizer)[0]
    if isinstance(vectorizer.analyzer, HeaderTerms):
        return vectorizer.analyzer.words
    unigrams = copy.copy(vectorizer)
    unigrams.ngram_range = (1, 1)
    return unigrams.build_analyzer()
