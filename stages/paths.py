"""Where every artifact of the pipeline lives (the same paths dvc.yaml declares)."""
from pathlib import Path

CORPUS = Path("data/corpus.parquet")
FETCH_REPORT = Path("metrics/fetch.json")

SPLIT_TRAIN = Path("data/split/train.parquet")
SPLIT_TEST = Path("data/split/test.parquet")

FEATURES = {"train": Path("data/features/train.npz"), "test": Path("data/features/test.npz")}
LABELS = Path("data/features/labels.npz")
VECTORIZER = Path("data/features/vectorizer.joblib")
FEATURES_META = Path("data/features/meta.json")

MODELS_DIR = Path("data/models")
BASELINE_MODEL = MODELS_DIR / "baseline.joblib"
METRICS_DIR = Path("metrics")


def weights(model):
    return MODELS_DIR / f"{model}.pt"


def train_log(model):
    return METRICS_DIR / "train" / f"{model}.csv"


def timings(model):
    """Epoch seconds and peak memory of a model's last training: not tracked by git or DVC."""
    return Path("data/timings") / f"{model}.json"


def metrics(model):
    return METRICS_DIR / f"{model}.json"


def class_report(model):
    return METRICS_DIR / "classes" / f"{model}.json"


def predictions(model):
    return METRICS_DIR / "predictions" / f"{model}.csv"

# Token ids in document order (ragged .npz), for models with ``input: sequence``.
SEQUENCES = {"train": Path("data/sequences/train.npz"), "test": Path("data/sequences/test.npz")}
SEQUENCE_VOCABULARY = Path("data/sequences/vocabulary.json")  # a JSON list: word i has id i
