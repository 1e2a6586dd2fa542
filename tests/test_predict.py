"""Sequence models through the real dvc CLI, early stopping, and predict on raw messages."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import COMMON, TOPICS, Project

from stages import params

SPACE = " ".join(TOPICS["sci.space"].split() * 3 + COMMON[:5])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_archive):
    project = Project(tmp_path_factory.mktemp("predict") / "repo", tiny_archive)
    # A few dozen tiny messages need more than the 2 epochs the real corpus gets.
    project.edit_params("models.gru_seq.epochs", 10)
    project.commit("gru_seq: 10 epochs")
    project.dvc("repro", "evaluate@lstm", "baseline", "sequence/dvc.yaml:evaluate@gru_seq")
    (project.path / "space.txt").write_text(f"Subject: a question\n\n{SPACE}\n")
    (project.path / "hockey.txt").write_text(" ".join(TOPICS["rec.sport.hockey"].split() * 3))
    return project


def predict(project, *args, stdin=None, check=True):
    result = subprocess.run([sys.executable, "-m", "stages.predict", *args], cwd=project.path,
                            env=project.env, input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"predict {args} failed:\n{result.stderr}")
    return result


def test_sequence_models_train_and_score_beside_the_others(trained):
    scores = json.loads((trained.path / "metrics/gru_seq.json").read_text())
    assert scores["accuracy"] >= 1 / len(TOPICS) + 0.5
    checkpoint = torch.load(trained.path / "data/models/gru_seq.pt", weights_only=True)
    model = params.model_params("gru_seq", trained.path / "params.yaml")
    assert checkpoint["config"]["input"] == "sequence"
    assert {k: checkpoint["config"][k] for k in ("cell", "bidirectional", "max_length")} == \
        {"cell": "gru", "bidirectional": model["bidirectional"], "max_length": model["max_length"]}
    shown = trained.dvc("metrics", "show").stdout
    assert "gru_seq" in shown and "lstm" in shown


@pytest.mark.parametrize("model", ["lstm", "gru_seq"])
def test_predict_names_the_newsgroup_of_a_clear_message(trained, model):
    result = predict(trained, "--model", model, "--json", "space.txt", "hockey.txt")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == ["space.txt", "hockey.txt"]
    assert lines[0]["predictions"][0]["newsgroup"] == "sci.space"
    assert lines[1]["predictions"][0]["newsgroup"] == "rec.sport.hockey"
    for line in lines:
        probabilities = [p["probability"] for p in line["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-6


def test_predict_baseline_gives_decision_scores_labelled_as_such(trained):
    result = predict(trained, "--model", "baseline", "--json", "space.txt", "hockey.txt")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["predictions"][0]["newsgroup"] for line in lines] == ["sci.space", "rec.sport.hockey"]
    for line in lines:
        assert all(set(p) == {"newsgroup", "score"} for p in line["predictions"])  # no "probability"
        scores = [p["score"] for p in line["predictions"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and scores[0] > 0
    plain = predict(trained, "--model", "baseline", "space.txt").stdout.splitlines()
    assert plain[0] == "space.txt  (decision scores of the linear SVM, not probabilities)"
    assert plain[1].split()[1] == "sci.space" and float(plain[1].split()[0]) > 0


def test_each_input_is_reported_on_its_own(trained):
    (trained.path / "binary").write_bytes(Path(sys.executable).read_bytes()[:4096])
    result = predict(trained, "--model", "lstm", "--json", "space.txt", "missing.txt", "binary",
                     "hockey.txt", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: cannot read missing.txt: No such file or directory",
        "error: binary is not text (it contains NUL bytes); give a plain-text message"]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == ["space.txt", "hockey.txt"]
    assert [line["predictions"][0]["newsgroup"] for line in lines] == ["sci.space", "rec.sport.hockey"]


def test_predict_reads_stdin_and_prints_plain_text(trained):
    result = predict(trained, "--model", "lstm", "--top-k", "2", stdin=SPACE)
    lines = result.stdout.splitlines()
    assert lines[0] == "<stdin>" and len(lines) == 3
    assert lines[1].split()[1] == "sci.space" and 0.0 < float(lines[1].split()[0]) <= 1.0
    dash = predict(trained, "--model", "lstm", "--top-k", "99", "--json", "-", stdin=SPACE)
    assert len(json.loads(dash.stdout)["predictions"]) == len(TOPICS)  # k capped at the classes


CONTROL_HEAVY = bytes(range(1, 9)) * 20 + b"orbit rocket shuttle\n"


@pytest.mark.parametrize("args,stdin,message", [
    (["--model", "nope", "space.txt"], "", "unknown model 'nope'; known models: rnn, lstm"),
    (["--model", "lstm"], "  \n\n", "<stdin> is empty"),
    (["--model", "lstm", "missing.txt"], "", "cannot read missing.txt"),
    (["--model", "lstm", "-"], "orbit\0rocket", "<stdin> is not text (it contains NUL bytes)"),
    (["--model", "baseline", "-"], CONTROL_HEAVY.decode("latin-1"),
     "<stdin> is not text (88% of its bytes are control characters)"),
])
def test_predict_errors_are_one_line(trained, args, stdin, message):
    result = predict(trained, *args, stdin=stdin, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0] and result.stdout == ""


def test_usage_errors_and_help_come_before_any_heavy_import(trained):
    result = predict(trained, "--model", "lstm", "--top-k", "0", check=False)
    assert result.returncode == 2 and "must be a positive integer" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for args in (["--help"], ["--model", "lstm", "--top-k", "0"], ["--model", "nope"]):
        imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "stages.predict", *args],
                                 cwd=trained.path, env=trained.env, capture_output=True, text=True)
        imported = {line.split("|")[-1].strip() for line in imports.stderr.splitlines()
                    if line.startswith("import time:")}
        assert imported & {"numpy", "torch", "sklearn", "scipy", "pyarrow"} == set(), args


def test_a_broken_artifact_is_one_line_and_names_its_fix(trained):
    path = trained.path / "data/models/baseline.joblib"
    good = path.read_bytes()
    try:
        path.write_bytes(good[:len(good) // 2])
        result = predict(trained, "--model", "baseline", "space.txt", check=False)
    finally:
        path.write_bytes(good)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert result.stderr.startswith("error: data/models/baseline.joblib is not a readable")
    assert "`dvc checkout --force data/models/baseline.joblib`" in result.stderr


@pytest.mark.parametrize("model,rebuild", [("lstm", "dvc repro"), ("baseline", "dvc repro"),
                                           ("gru_seq", "dvc repro sequence/dvc.yaml")])
def test_predict_without_artifacts_names_the_pipeline_that_makes_them(project, model, rebuild):
    result = predict(project, "--model", model, stdin=SPACE, check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "missing: run `" + rebuild + "` (or `dvc pull`)" in result.stderr


def test_predict_on_a_fresh_clone_after_dvc_pull(trained, tmp_path):
    trained.dvc("remote", "add", "-d", "local", str(tmp_path / "remote"))
    trained.dvc("push")
    trained.commit("trained")
    clone = tmp_path / "clone"
    trained.run("git", "clone", "-q", str(trained.path), str(clone))
    # Only what predict reads (this project trained two models, so a bare pull would
    # report the others missing).
    pulled = subprocess.run(["dvc", "pull", "vectorize", "sequence/dvc.yaml:sequences",
                             "sequence/dvc.yaml:train@gru_seq"], cwd=clone, env=trained.env,
                            capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    result = subprocess.run([sys.executable, "-m", "stages.predict", "--model", "gru_seq", "--json"],
                            cwd=clone, env=trained.env, input=SPACE, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["newsgroup"] == "sci.space"


def test_early_stopping_holds_out_part_of_the_train_split(project):
    project.edit_params("train.validation_fraction", 0.25)
    project.edit_params("train.patience", 2)
    project.edit_params("models.gru_seq.epochs", 40)
    project.edit_params("models.gru_seq.max_length", 20)
    out = project.dvc("repro", "sequence/dvc.yaml:train@gru_seq").stderr
    log = (project.path / "metrics/train/gru_seq.csv").read_text().splitlines()
    assert log[0] == "epoch,loss,accuracy,val_loss,val_accuracy"
    checkpoint = torch.load(project.path / "data/models/gru_seq.pt", weights_only=True)
    assert 1 <= checkpoint["best_epoch"] <= len(log) - 1
    assert f"keeping epoch {checkpoint['best_epoch']}" in out
    if len(log) - 1 < 40:
        assert "stopping" in out and len(log) - 1 == checkpoint["best_epoch"] + 2


def test_patience_without_a_validation_slice_is_refused(project):
    project.edit_params("train.patience", 3)
    result = project.stage("train", "lstm", check=False)
    assert result.returncode == 2
    assert "train.patience needs a validation slice" in result.stderr
