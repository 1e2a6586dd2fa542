"""Scores every classifier the same way: metrics JSON, a per-class report, and predictions.

metrics/<model>.json holds the two headline scores only, accuracy and macro-F1 on the test
split, so that `dvc metrics show` and `dvc exp show` stay narrow (DVC names each column
``metrics/<model>.json:<key>``); the per-class report, metrics/classes/<model>.json, holds the
rest: per-class scores, their averages (weighted F1 among them), the test loss and the number
of trained parameters.  Both hold only values that a repeated run reproduces exactly (no
times), so ``dvc metrics diff`` shows real changes only.

The scores are scikit-learn's (``accuracy_score``, ``f1_score`` and ``classification_report``
with ``zero_division=0``; tests/test_train_evaluate.py checks they agree), computed here from
the confusion matrix because importing ``sklearn.metrics`` took a third of each evaluate stage.
"""
import numpy as np

from stages import paths
from stages.files import write_csv, write_json


def class_scores(y_true, y_pred, num_classes):
    """Per-class precision, recall, F1 and support, as arrays (0 where undefined)."""
    confusion = np.bincount(np.asarray(y_true) * num_classes + np.asarray(y_pred),
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    hits, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)

    def ratio(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros(num_classes),
                         where=denominator > 0)

    f1 = ratio(2 * hits, support + predicted)  # 2·tp / (2·tp + fp + fn)
    return ratio(hits, predicted), ratio(hits, support), f1, support


def report(y_true, y_pred, classes):
    """scikit-learn's ``classification_report(..., output_dict=True, zero_division=0)``."""
    precision, recall, f1, support = class_scores(y_true, y_pred, len(classes))
    total = int(support.sum())
    rows = {name: {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)}
    rows["accuracy"] = float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    for name, weights in (("macro avg", None), ("weighted avg", support)):
        rows[name] = {"precision": float(np.average(precision, weights=weights)),
                      "recall": float(np.average(recall, weights=weights)),
                      "f1-score": float(np.average(f1, weights=weights)), "support": total}
    return rows


def write_scores(name, classes, ids, y_true, y_pred, parameters, test_loss=None):
    scores = report(y_true, y_pred, classes)
    metrics = {"accuracy": round(scores["accuracy"], 6),
               "macro_f1": round(scores["macro avg"]["f1-score"], 6)}
    write_json(paths.metrics(name), metrics)
    details = {key: {k: round(v, 6) for k, v in value.items()} if isinstance(value, dict)
               else round(value, 6) for key, value in scores.items()}
    details["parameters"] = int(parameters)
    if test_loss is not None:
        details["test_loss"] = round(float(test_loss), 6)
    write_json(paths.class_report(name), details)
    write_csv(paths.predictions(name), ["id", "actual", "predicted"],
              ((doc, classes[t], classes[p]) for doc, t, p in zip(ids, y_true, y_pred)))
    return metrics
