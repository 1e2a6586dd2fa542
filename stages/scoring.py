"""Scores every classifier the same way: metrics JSON, a per-class report, and predictions.

metrics/<model>.json holds only values that a repeated run reproduces exactly (no times),
so ``dvc metrics diff`` shows real changes only.
"""
from stages import paths
from stages.files import write_csv, write_json


def write_scores(name, classes, ids, y_true, y_pred, parameters, test_loss=None):
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    metrics = {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 6),
        "weighted_f1": round(float(f1_score(y_true, y_pred, average="weighted", zero_division=0)), 6),
        "parameters": int(parameters),
    }
    if test_loss is not None:
        metrics["test_loss"] = round(float(test_loss), 6)
    report = classification_report(y_true, y_pred, labels=list(range(len(classes))),
                                   target_names=classes, output_dict=True, zero_division=0)
    write_json(paths.metrics(name), metrics)
    write_json(paths.class_report(name),
               {key: {k: round(v, 6) for k, v in value.items()} if isinstance(value, dict)
                else round(value, 6) for key, value in report.items()})
    write_csv(paths.predictions(name), ["id", "actual", "predicted"],
              ((doc, classes[t], classes[p]) for doc, t, p in zip(ids, y_true, y_pred)))
    return metrics
