"""params.yaml: the one place where parameters are read, defaulted and validated.

Every stage calls :func:`load` before doing any work, so a typo or an out-of-range value
fails in a second with a one-line error instead of after minutes of training.  Each stage
uses only its own section; ``dvc.yaml`` lists exactly those sections so that DVC reruns a
stage only when something it reads has changed.
"""
import difflib
import re
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from stages.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

NEWSGROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
)


# Each checker takes a value and returns it (possibly normalised) or raises ValueError with
# the allowed range; _check_section adds the key's dotted name.
def integer(low, high=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be between {low} and {high}" if high is not None
                             else f"must be >= {low}, got {value}")
        return value
    return check


def number(low, high=None, *, low_open=False, high_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        # YAML's .nan, .inf and -.inf (NaN compares false), and integers past a float's range.
        try:
            finite = abs(float(value)) < float("inf")
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f"must be a finite number, got {value}")
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"must be in {left}{low}, {'inf' if high is None else high}{right}, "
                             f"got {value}")
        return float(value)
    return check


def boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def choice(*options):
    def check(value):
        if value not in options:
            raise ValueError(f"must be one of {', '.join(map(str, options))}; got {value!r}")
        return value
    return check


def subset_of(*options):
    def check(value):
        if not isinstance(value, list):
            raise ValueError(f"must be a list drawn from {', '.join(options)}; got {value!r}")
        for item in value:
            if item not in options:
                raise ValueError(f"has unknown entry {item!r}; allowed: {', '.join(options)}")
        return value
    return check


def optional(inner):
    def check(value):
        return None if value is None else inner(value)
    return check


def text(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def regex(value):
    text(value)
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression ({exc})") from None
    return value


def newsgroups(value):
    if not isinstance(value, list) or not value:
        raise ValueError("must be null (all newsgroups) or a non-empty list of newsgroup names")
    for name in value:
        if name not in NEWSGROUPS:
            near = difflib.get_close_matches(str(name), NEWSGROUPS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"has unknown newsgroup {name!r}{hint}")
    return value


def ngram_range(value):
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)
            or value[0] > value[1]):
        raise ValueError(f"must be [min_n, max_n] with 1 <= min_n <= max_n, got {value!r}")
    return value


def header_fields(value):
    if not isinstance(value, list) or not all(isinstance(f, str) and re.fullmatch(r"[A-Za-z][\w-]*", f)
                                              for f in value):
        raise ValueError(f"must be a list of header names such as [subject], got {value!r}")
    return value


def document_frequency(value):
    """min_df/max_df follow scikit-learn: an int is a document count, a float a proportion."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(1)(value)
    return number(0.0, 1.0, low_open=True)(value)


def device(value):
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"must be auto, cpu, cuda, cuda:<index> or mps; got {value!r}")
    return value


# section -> key -> (default, checker)
SCHEMA = {
    "fetch": {
        "archive": (None, optional(text)),
        "remove": ([], subset_of("headers", "footers", "quotes")),
        "categories": (None, optional(newsgroups)),
    },
    "split": {
        "strategy": ("random", choice("random", "bydate")),
        "test_size": (0.2, number(0.0, 1.0, low_open=True, high_open=True)),
        "seed": (2024, integer(0, 2**32 - 1)),
        "stratify": (False, boolean),
    },
    "vectorize": {
        "max_features": (10000, optional(integer(1))),
        "token_pattern": (r"\b\w+\b", regex),
        "lowercase": (True, boolean),
        "ngram_range": ([1, 1], ngram_range),
        "min_df": (1, document_frequency),
        "max_df": (1.0, document_frequency),
        "weighting": ("count", choice("count", "binary", "tfidf")),
        # Header lines (e.g. [subject]) whose words are also terms of their own (stages/terms.py).
        "header_fields": ([], header_fields),
        # Character n-grams (within words) as a second block of terms (stages/terms.py).
        "char_ngram_range": (None, optional(ngram_range)),
    },
    # The sequence models' own vocabulary (stage sequences): words of at least min_df train
    # documents; max_features, if set, keeps those in the most documents.
    "sequences": {
        "min_df": (2, integer(1)),
        "max_features": (None, optional(integer(1))),
    },
    "train": {
        "seed": (0, integer(0, 2**63 - 1)),
        "epochs": (10, integer(1)),
        "batch_size": (64, integer(1)),
        "lr": (0.001, number(0.0, low_open=True)),
        "weight_decay": (0.0, number(0.0)),
        # Clip the gradients' global L2 norm to this before each step (0: never, the seed's).
        "grad_clip": (0.0, number(0.0)),
        # constant (the seed's) or cosine: linear warm-up over the first `warmup` fraction of
        # all steps, then a cosine decay to zero.
        "schedule": ("constant", choice("constant", "cosine")),
        "warmup": (0.0, number(0.0, 1.0, high_open=True)),
        "device": ("auto", device),
        "nproc": (1, integer(1)),
        "bf16": (False, boolean),
        # lazy_adam: only the input rows a batch touches step (SparseAdam's rule; CPU bow only).
        "optimizer": ("adam", choice("adam", "lazy_adam")),
        # Early stopping: hold out this fraction of the train split (never the test split),
        # score it every epoch and keep the best epoch's weights; stop after `patience`
        # epochs without improvement (0: run every epoch).  0.0 = off, the seed's setting.
        "validation_fraction": (0.0, number(0.0, 0.5, high_open=True)),
        "patience": (0, integer(0)),
        # > 0: from this epoch on the model is the mean of the weights after each epoch
        # (stochastic weight averaging; with a validation slice, the mean is what it scores).
        "swa_start": (0, integer(0)),
    },
    "model": {
        "cell": ("lstm", choice("rnn", "lstm", "gru")),
        "hidden_size": (128, integer(1)),
        "num_layers": (1, integer(1)),
        "dropout": (0.0, number(0.0, 1.0, high_open=True)),
        "bidirectional": (False, boolean),
        # bow: the seed's bag of words as one step; sequence: the words in order (the keys
        # below apply to sequence models only).
        "input": ("bow", choice("bow", "sequence")),
        "embedding_dim": (128, integer(1)),
        "max_length": (400, integer(1)),
        "pooling": ("last", choice("last", "mean", "max")),
    },
    "baseline": {
        "C": (1.0, number(0.0, low_open=True)),
        "tfidf": (True, boolean),
    },
}
# What one model may set for itself instead of the train section's value (null: train's).  A
# model's own settings live in its models.<name> section, so editing them reruns that model only.
TRAINING_OVERRIDES = ("epochs", "batch_size", "lr", "weight_decay", "grad_clip", "schedule", "warmup",
                      "optimizer", "swa_start")
SCHEMA["model"].update({key: (None, optional(SCHEMA["train"][key][1])) for key in TRAINING_OVERRIDES})
# The `models` section maps a model name (a train/evaluate matrix entry) to a "model" schema.
SECTIONS = ("fetch", "split", "vectorize", "sequences", "train", "models", "baseline")


def _suggest(key, valid):
    near = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else f" (valid keys: {', '.join(valid)})"


def _check_section(name, values, schema):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise PipelineError(f"{PARAMS_FILE}: {name} must be a mapping of keys to values")
    for key in values:
        if key not in schema:
            raise PipelineError(f"{PARAMS_FILE}: unknown key {name}.{key}{_suggest(key, schema)}")
    checked = {}
    for key, (default, check) in schema.items():
        try:
            checked[key] = check(values[key]) if key in values else default
        except ValueError as exc:
            raise PipelineError(f"{PARAMS_FILE}: {name}.{key} {exc}") from None
    return checked


def validate(raw):
    """Check a whole parsed params.yaml; return every section with defaults filled in."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{PARAMS_FILE}: expected a mapping of sections, got {type(raw).__name__}")
    for section in raw:
        if section not in SECTIONS:
            raise PipelineError(f"{PARAMS_FILE}: unknown section {section}{_suggest(section, SECTIONS)}")
    params = {name: _check_section(name, raw.get(name), SCHEMA[name])
              for name in SECTIONS if name != "models"}
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise PipelineError(f"{PARAMS_FILE}: models must map model names to their settings")
    if params["train"]["patience"] and not params["train"]["validation_fraction"]:
        raise PipelineError(f"{PARAMS_FILE}: train.patience needs a validation slice; set "
                            "train.validation_fraction (e.g. 0.1) or patience: 0")
    params["models"] = {}
    for model_name, settings in models.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", str(model_name)):
            raise PipelineError(f"{PARAMS_FILE}: model name {model_name!r} may use only letters, "
                                "digits and _")
        params["models"][model_name] = _check_section(f"models.{model_name}", settings,
                                                      SCHEMA["model"])
    return params


def load(section, path=PARAMS_FILE):
    """Validate the whole params file and return one section (defaults filled in)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = YAML(typ="safe", pure=True).load(f)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stages from the repository root") from None
    except YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise PipelineError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return validate(raw)[section]


def training_params(name, path=PARAMS_FILE):
    """The train section with model ``name``'s own overrides applied (what trains it)."""
    settings, model = load("train", path), model_params(name, path)
    settings.update({key: model[key] for key in TRAINING_OVERRIDES if model[key] is not None})
    if settings["swa_start"] > settings["epochs"]:
        raise PipelineError(f"{path}: swa_start {settings['swa_start']} is past model {name}'s "
                            f"last epoch ({settings['epochs']}); set it to at most epochs, or 0")
    return settings


def model_params(name, path=PARAMS_FILE):
    models = load("models", path)
    if name not in models:
        raise PipelineError(f"{path}: no section models.{name}; known models: "
                            f"{', '.join(models) or 'none'}")
    return models[name]
