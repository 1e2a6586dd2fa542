"""Sequence models through the real dvc CLI, early stopping, and predict on raw messages."""
import json
import subprocess
import sys

import pytest
import torch
from conftest import COMMON, TOPICS, Project

SPACE = " ".join(TOPICS["sci.space"].split() * 3 + COMMON[:5])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_archive):
    project = Project(tmp_path_factory.mktemp("predict") / "repo", tiny_archive)
    # A few dozen tiny messages need more than the 2 epochs the real corpus gets.
    project.edit_params("models.gru_seq.epochs", 10)
    project.commit("gru_seq: 10 epochs")
    project.dvc("repro", "evaluate@lstm", "sequence/dvc.yaml:evaluate@gru_seq")
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
    assert checkpoint["config"]["input"] == "sequence" and checkpoint["config"]["bidirectional"]
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


def test_predict_reads_stdin_and_prints_plain_text(trained):
    result = predict(trained, "--model", "lstm", "--top-k", "2", stdin=SPACE)
    lines = result.stdout.splitlines()
    assert lines[0] == "<stdin>" and len(lines) == 3
    assert lines[1].split()[1] == "sci.space" and 0.0 < float(lines[1].split()[0]) <= 1.0
    dash = predict(trained, "--model", "lstm", "--top-k", "99", "--json", "-", stdin=SPACE)
    assert len(json.loads(dash.stdout)["predictions"]) == len(TOPICS)  # k capped at the classes


@pytest.mark.parametrize("args,stdin,message", [
    (["--model", "nope", "space.txt"], None, "unknown model 'nope'; known models: rnn, lstm"),
    (["--model", "lstm"], "  \n\n", "<stdin> is empty"),
    (["--model", "lstm", "missing.txt"], None, "cannot read missing.txt"),
    (["--model", "lstm", "--top-k", "0"], None, "must be a positive integer"),
])
def test_predict_errors_are_one_line(trained, args, stdin, message):
    result = predict(trained, *args, stdin=stdin or "", check=False)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_predict_without_artifacts_says_how_to_get_them(project):
    result = predict(project, "--model", "lstm", stdin=SPACE, check=False)
    assert result.returncode == 2
    assert "missing" in result.stderr and "dvc repro" in result.stderr and "dvc pull" in result.stderr


def test_predict_on_a_fresh_clone_after_dvc_pull(trained, tmp_path):
    trained.dvc("remote", "add", "-d", "local", str(tmp_path / "remote"))
    trained.dvc("push")
    trained.commit("trained")
    clone = tmp_path / "clone"
    trained.run("git", "clone", "-q", str(trained.path), str(clone))
    # Only what predict reads (this project trained two models, so a bare pull would
    # report the others missing).
    pulled = subprocess.run(["dvc", "pull", "vectorize", "sequence/dvc.yaml:train@gru_seq"], cwd=clone, env=trained.env, capture_output=True, text=True)
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
