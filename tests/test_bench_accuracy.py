"""bench/accuracy.py: its rows have the schema the README documents, its commands name only
valid parameters, and a dry run lists every row, marking the ones already measured."""
import json

import pytest
from ruamel.yaml import YAML

from bench import accuracy
from stages.params import PARAMS_FILE, validate

KEYS = ["setting", "config", "model", "accuracy", "macro_f1", "features", "epochs",
        "train_seconds", "epoch_seconds", "peak_rss_mb", "command", "commit"]


def test_a_trained_models_row():
    row = accuracy.make_row("bydate", "full-gru", "gru", "dvc exp run …",
                            {"accuracy": 0.868, "macro_f1": 0.861, "test_loss": 0.5},
                            {"classes": ["a", "b"], "n_features": 491197},
                            {"epoch_seconds": [14.0, 11.0, 12.5, 30.0], "train_seconds": 67.5,
                             "peak_rss_mb": 6100}, 4, "abc1234")
    assert list(row) == KEYS
    assert row == {"setting": "bydate", "config": "full-gru", "model": "gru", "accuracy": 0.868,
                   "macro_f1": 0.861, "features": 491197, "epochs": 4, "train_seconds": 67.5,
                   "epoch_seconds": 13.25, "peak_rss_mb": 6100, "command": "dvc exp run …",
                   "commit": "abc1234"}
    json.dumps(row)


def test_the_baselines_row_has_no_epochs():
    row = accuracy.make_row("seed", "baseline", "baseline", "c", {"accuracy": 0.9, "macro_f1": 0.8},
                            {"n_features": 10000}, None, None, "abc1234")
    assert list(row) == KEYS
    assert [row[k] for k in ("epochs", "train_seconds", "epoch_seconds", "peak_rss_mb")] == [None] * 4
    assert "| seed | baseline | baseline | 10,000 | 0.9000 | 0.8000 | – | – | – | – | abc1234 |" in \
        accuracy.markdown([row])


def overrides(command):
    """The -S key=value pairs of a row's command, with values parsed as YAML (as DVC does)."""
    words = command.replace("'", "").split()
    pairs = [words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "-S"]
    return {key: YAML(typ="safe", pure=True).load(value) for key, value in pairs}


def test_a_key_params_yaml_leaves_to_its_default_is_added_not_overridden():
    # DVC refuses `-S train.optimizer=…` when params.yaml has no train.optimizer: it must be `+`.
    command = accuracy.command("seed", "bigram-gru")
    assert " -S +train.optimizer=lazy_adam " in command
    assert " -S train.lr=0.002 " in command and " -S models.gru.hidden_size=256 " in command


@pytest.mark.parametrize("setting", accuracy.SETTINGS)
@pytest.mark.parametrize("entry", accuracy.ENTRIES)
def test_every_command_sets_valid_parameters_and_targets_its_model(setting, entry):
    command = accuracy.command(setting, entry)
    assert command.startswith(f"dvc exp run -n {setting}-{entry} ")
    model, _, target = accuracy.ENTRIES[entry]
    assert command.endswith(" " + target) and target.endswith(model)
    with open(PARAMS_FILE, encoding="utf-8") as f:
        params = YAML(typ="safe", pure=True).load(f)
    for key, value in overrides(command).items():
        added = key.startswith("+")
        *path, last = key.lstrip("+").split(".")
        section = params
        for part in path:
            section = section[part]
        assert (last in section) != added, key  # `+` exactly for keys params.yaml leaves out
        section[last] = value
    checked = validate(params)
    assert checked["split"]["strategy"] == ("random" if setting == "seed" else "bydate")
    assert (checked["fetch"]["remove"] == ["headers", "footers", "quotes"]) == (setting == "bydate-clean")


def test_dry_run_lists_the_grid_and_marks_rows_already_measured(tmp_path, capsys):
    done = accuracy.make_row("seed", "gru", "gru", accuracy.command("seed", "gru"),
                             {"accuracy": 0.9, "macro_f1": 0.9}, {"n_features": 10}, None, 10,
                             "abc1234")
    (tmp_path / "accuracy.json").write_text(json.dumps([done]))
    accuracy.main(["--dry-run", "--settings", "seed,bydate", "--models", "gru,baseline",
                   "--output", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["# done: " + accuracy.command("seed", "gru"), accuracy.command("seed", "baseline"),
                     accuracy.command("bydate", "gru"), accuracy.command("bydate", "baseline")]
    with pytest.raises(SystemExit, match="unknown model grue"):
        accuracy.main(["--dry-run", "--models", "grue", "--output", str(tmp_path)])


def test_a_rerun_row_takes_the_place_of_the_old_one():
    def row(setting, config, accuracy):
        return {"setting": setting, "config": config, "accuracy": accuracy}

    rows = [row("seed", "gru", 0.9), row("seed", "lstm", 0.8)]
    assert accuracy.put_row(rows, row("seed", "gru", 0.7)) == [row("seed", "gru", 0.7), rows[1]]
    assert accuracy.put_row(rows, row("bydate", "gru", 0.6)) == rows + [row("bydate", "gru", 0.6)]


def test_header_term_rows_only_where_headers_are_kept(capsys):
    accuracy.main(["--dry-run", "--settings", "bydate,bydate-clean",
                   "--models", "subject-rnn,full-rnn"])
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" -n ")[1].split()[0] for line in printed] == [
        "bydate-subject-rnn", "bydate-full-rnn", "bydate-clean-full-rnn"]
    assert "-S 'vectorize.header_fields=[subject]'" in printed[0]


def test_char_bigram_rows_only_where_headers_are_removed(capsys):
    accuracy.main(["--dry-run", "--models", "char-bigram-rnn,char-rnn"])
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" -n ")[1].split()[0] for line in printed] == [
        "seed-char-rnn", "bydate-char-rnn", "bydate-clean-char-bigram-rnn", "bydate-clean-char-rnn"]
    assert "-S 'vectorize.ngram_range=[1,2]'" in printed[2]
    assert "-S 'vectorize.char_ngram_range=[2,5]'" in printed[2]
