"""The DVC workflow end to end, through the real `git` and `dvc` CLIs in temporary repositories
on the tiny archive: only what changed reruns; metrics and params diffs across commits in a fresh
clone; a teammate's reproduction through a DVC remote; experiments and a queued sweep; the CI
check that dvc.lock is current; the DAG; the training curves.

One module-scoped repository, ``origin``, runs the pipeline once, commits it and pushes its data
to a local-directory remote (configured in that throwaway repository only); every other test
works in its own `git clone` of it."""
import ast
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import ROOT, Project, run, share_compiled_kernels

MODELS = ("rnn", "lstm", "gru")
TRAIN = tuple(f"train@{m}" for m in MODELS)
EVALUATE = tuple(f"evaluate@{m}" for m in MODELS)
ALL = ("fetch", "split", "vectorize", *TRAIN, *EVALUATE, "baseline")
# The opt-in pipeline of sequence models (sequence/dvc.yaml).
SEQUENCE_MODELS = ("rnn_seq", "lstm_seq", "gru_seq")
SEQUENCE = tuple(f"sequence/dvc.yaml:{stage}" for stage in (
    "sequences", *(f"{kind}@{m}" for kind in ("train", "evaluate") for m in SEQUENCE_MODELS)))
METRICS = tuple(f"metrics/{name}.json" for name in MODELS + ("baseline",))


class Clone(Project):
    """A `git clone` of another test repository, with the same helpers as Project."""

    def __init__(self, source, path, env):
        self.path, self.env = Path(path), env
        run(["git", "clone", "-q", str(source.path), str(self.path)], self.path.parent, env)
        share_compiled_kernels(self.path / "stages")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "test")


def stages_run(output):
    """The stages a `dvc repro` ran or restored from the run-cache, from its output."""
    found = re.findall(r"^(?:Running stage '([^']+)':|Stage '([^']+)' is cached)", output, re.M)
    return sorted({ran or cached for ran, cached in found})


def stages_planned(project):
    """The stages `dvc repro` would run: each stale one and all that follow it.  (A dry run
    prints "Running stage" for each; its "is cached" lines mean nothing.)"""
    output = project.dvc("repro", "--dry", "--force-downstream").stdout
    return sorted(set(re.findall(r"^Running stage '([^']+)':", output, re.M)))


def terminal_table(project, *args):
    """The non-blank lines of a `dvc` table as a 120-column terminal shows them, each checked
    to fit and to have lost no column to DVC's "…"."""
    env = dict(project.env, COLUMNS="120")
    lines = [line for line in run(["dvc", *args], project.path, env).stdout.splitlines()
             if line.strip()]
    for line in lines:
        assert len(line) <= 120 and "…" not in line, line
    return lines


def read_metrics(project):
    """Every git-tracked result of the main pipeline: metrics, per-class reports, the corpus's
    counts."""
    names = METRICS + tuple(f"metrics/classes/{name}.json" for name in MODELS + ("baseline",))
    return {name: (project.path / name).read_bytes() for name in names + ("metrics/fetch.json",)}


@pytest.fixture(scope="module")
def origin(tmp_path_factory, tiny_archive):
    """Teammate A: runs the pipeline, commits code, dvc.lock and metrics, pushes the data."""
    base = tmp_path_factory.mktemp("workflow")
    project = Project(base / "origin", tiny_archive)
    project.env["DVC_NO_ANALYTICS"] = "1"
    project.dvc("remote", "add", "-d", "local", str(base / "remote"))
    assert stages_run(project.dvc("repro", "--all-pipelines").stdout) == sorted(ALL + SEQUENCE)
    project.commit("run the pipelines")
    project.dvc("push", "--run-cache")
    return project


@pytest.fixture
def clone(origin, tmp_path):
    """A factory of fresh clones: ``clone()`` of origin, ``clone(other)`` of another clone."""
    count = iter(range(100))

    def make(source=origin, pull=False):
        project = Clone(source, tmp_path / f"clone{next(count)}", origin.env)
        if pull:
            project.dvc("pull")
        return project

    return make


# --- 1. Only what changed reruns -------------------------------------------------------------

def edit_param(key, value):
    return lambda project: project.edit_params(key, value)


def append_comment(path):
    def edit(project):
        with open(project.path / path, "a") as f:
            f.write("# an edit that changes nothing but the file's hash\n")
    return edit


# (id, edit, the stages it reruns, whether to run them).  Every case compares DVC's plan,
# `dvc repro --dry --force-downstream` (each stale stage and all that follows it), with the
# expected stages; the cheap ones (real=True) then run `dvc repro` and compare what ran, and are
# committed; the others, which retrain every model, are undone.  WORKFLOW_REAL_RERUNS=1 runs
# every case (about four more minutes on two cores).  Each case starts up to date.
RERUN_CASES = [
    ("nothing", lambda project: None, (), True),
    ("models.lstm.hidden_size", edit_param("models.lstm.hidden_size", 64),
     ("train@lstm", "evaluate@lstm"), True),
    ("models.gru.lr", edit_param("models.gru.lr", 0.002), ("train@gru", "evaluate@gru"), True),
    ("baseline.C", edit_param("baseline.C", 0.5), ("baseline",), True),
    ("stages/evaluate.py", append_comment("stages/evaluate.py"), EVALUATE, True),
    ("train.epochs", edit_param("train.epochs", 3), TRAIN + EVALUATE, False),
    ("stages/model.py", append_comment("stages/model.py"), TRAIN + EVALUATE, False),
    ("vectorize.lowercase", edit_param("vectorize.lowercase", False),
     ("vectorize", *TRAIN, *EVALUATE, "baseline"), False),
    ("split.seed", edit_param("split.seed", 7), ALL[1:], False),
    ("fetch.remove", edit_param("fetch.remove", ["headers"]), ALL, False),
]
REAL_RERUNS = os.environ.get("WORKFLOW_REAL_RERUNS") == "1"


@pytest.fixture(scope="module")
def pipeline(origin, tmp_path_factory):
    """An up-to-date clone of origin (its data pulled from the remote), shared by the cases."""
    project = Clone(origin, tmp_path_factory.mktemp("reruns") / "repo", origin.env)
    project.dvc("pull")
    return project


@pytest.mark.parametrize("edit, expected, real", [case[1:] for case in RERUN_CASES],
                         ids=[case[0] for case in RERUN_CASES])
def test_only_what_changed_reruns(pipeline, edit, expected, real):
    # dvc.yaml only: the real cases rerun the main pipeline, and an edit to shared code also
    # leaves sequence/dvc.yaml stale.
    assert json.loads(pipeline.dvc("status", "dvc.yaml", "--json").stdout) == {}, \
        "not up to date to start"
    try:
        edit(pipeline)
        assert stages_planned(pipeline) == sorted(expected)
        if real or REAL_RERUNS:
            assert stages_run(pipeline.dvc("repro").stdout) == sorted(expected)
            pipeline.commit("a case")
        else:
            pipeline.git("checkout", "--", ".")
    except BaseException:  # leave the next case an up-to-date pipeline all the same
        pipeline.git("checkout", "--", ".")
        pipeline.dvc("checkout", "--force", check=False)
        raise


def stage_imports(module):
    """The stages/ files that `python -m stages.<module>` executes (imports, transitively)."""
    seen, todo = {"__init__"}, [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((ROOT / "stages" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "stages":
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                todo.append(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[1] for a in node.names if a.name.startswith("stages.")]
    return {f"stages/{name}.py" for name in seen}


def test_each_stage_depends_on_exactly_the_code_it_imports():
    from ruamel.yaml import YAML

    pipelines = {"dvc.yaml": {"fetch", "split", "vectorize", "train", "evaluate", "baseline"},
                 "sequence/dvc.yaml": {"sequences", "train", "evaluate"}}
    for path, names in pipelines.items():
        stages = YAML(typ="safe").load((ROOT / path).read_text())["stages"]
        assert set(stages) == names
        for name, stage in stages.items():
            module = re.match(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
            code = {dep for dep in stage["deps"] if dep.startswith("stages/")}
            assert code == stage_imports(module), f"{path}:{name}"


def params_read(module):
    """The params.yaml keys that `python -m stages.<module>` reads, as dvc.yaml names them."""
    keys = set()
    for path in sorted(stage_imports(module)):
        source = (ROOT / path).read_text()
        keys |= set(re.findall(r'params\.load\("(\w+)"\)', source))
        if "params.training_params(" in source:
            keys |= {"train", "models.${item.model}"}
        if "params.model_params(" in source:
            keys.add("models.${item.model}")
    return keys


def test_each_stage_lists_exactly_the_params_it_reads():
    from ruamel.yaml import YAML

    for path in ("dvc.yaml", "sequence/dvc.yaml"):
        for name, stage in YAML(typ="safe").load((ROOT / path).read_text())["stages"].items():
            module = re.match(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
            assert set(stage.get("params", [])) == params_read(module), f"{path}:{name}"



# --- 2. Metrics and params diffs across commits ----------------------------------------------

def test_metrics_and_params_diff_across_commits_in_a_fresh_clone(clone):
    work = clone(pull=True)
    work.edit_params("models.gru.hidden_size", 2)  # too small for the tiny archive's 4 groups
    assert stages_run(work.dvc("repro").stdout) == ["evaluate@gru", "train@gru"]
    work.commit("a much smaller GRU")

    fresh = clone(work)  # no data, no remote needed: the metrics live in git
    metrics = json.loads(fresh.dvc("metrics", "diff", "HEAD~1", "--json").stdout)
    # Only the GRU's scores: not the per-class reports, nor the corpus's counts.
    assert set(metrics) == {"metrics/gru.json"}
    assert set(metrics["metrics/gru.json"]) == {"accuracy", "macro_f1"}
    accuracy = metrics["metrics/gru.json"]["accuracy"]
    assert accuracy["new"] < accuracy["old"]
    params = json.loads(fresh.dvc("params", "diff", "HEAD~1", "--json").stdout)
    assert params == {"params.yaml": {"models.gru.hidden_size": {"old": 128, "new": 2, "diff": -126}}}
    # In a 120-column terminal: one row per model (both pipelines), no column cut off.
    table = terminal_table(fresh, "metrics", "show")
    assert [line.split()[0] for line in table[1:]] == [f"metrics/{m}.json" for m in MODELS + (
        "baseline",)] + [f"metrics/{m}.json" for m in SEQUENCE_MODELS]
    assert table[0].split() == ["Path", "accuracy", "macro_f1"]


# --- 3. A teammate reproduces ----------------------------------------------------------------

def out_hashes(project):
    """{output path: md5} from a project's dvc.lock."""
    from ruamel.yaml import YAML

    lock = YAML(typ="safe").load((project.path / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values()
            for out in stage.get("outs", ())}


def test_teammate_pulls_or_reproduces_the_same_results(origin, clone):
    pulled = clone(pull=True)
    assert json.loads(pulled.dvc("status", "--json").stdout) == {}
    assert read_metrics(pulled) == read_metrics(origin)
    assert (pulled.path / "data/models/gru.pt").read_bytes() == (
        origin.path / "data/models/gru.pt").read_bytes()

    rerun = clone()  # no pull: everything from the archive, the metrics too
    shutil.rmtree(rerun.path / "metrics")
    assert stages_run(rerun.dvc("repro").stdout) == sorted(ALL)
    assert read_metrics(rerun) == read_metrics(origin)
    # Every output, the trained weights, the pickled vectorizer and the training logs included,
    # is byte for byte A's: wall-clock seconds are kept out of everything DVC hashes.
    assert out_hashes(rerun) == out_hashes(origin)
    assert (rerun.path / "dvc.lock").read_text() == (origin.path / "dvc.lock").read_text()
    # What the README tells a teammate to check: nothing tracked changed (but the sequence
    # models' results, removed above and not rerun here), nothing left to run.
    changed = rerun.git("status", "--porcelain").stdout.splitlines()
    assert changed and all(line.startswith(" D metrics/") and "_seq." in line for line in changed)
    assert json.loads(rerun.dvc("status", "dvc.yaml", "--json").stdout) == {}


def test_the_pushed_run_cache_restores_a_run_instead_of_repeating_it(clone):
    # Across machines the run-cache restores the stages whose outputs are all DVC-cached (split,
    # vectorize); a stage with a `cache: false` output reruns (see the README).
    runner = clone(pull=True)
    runner.edit_params("vectorize.max_features", 100)
    assert stages_run(runner.dvc("repro", "--single-item", "vectorize").stdout) == ["vectorize"]
    runner.dvc("push", "--run-cache")

    teammate = clone()
    teammate.dvc("pull", "--run-cache")
    teammate.edit_params("vectorize.max_features", 100)
    output = teammate.dvc("repro", "--pull", "--single-item", "vectorize").stdout
    assert "Stage 'vectorize' is cached - skipping run" in output
    assert "Running stage" not in output
    assert (teammate.path / "data/features/train.npz").read_bytes() == (
        runner.path / "data/features/train.npz").read_bytes()


# --- 4. Experiments --------------------------------------------------------------------------

def experiments(project):
    """{name: (state, gru hidden size, gru metrics, hash of the GRU's weights)} of the
    experiments `dvc exp show` lists."""
    found = {}
    for commit in json.loads(project.dvc("exp", "show", "--json").stdout):
        for experiment in commit.get("experiments") or ():
            data = experiment["revs"][0].get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data", {})
            metrics = data.get("metrics", {}).get("metrics/gru.json", {}).get("data")
            weights = (data.get("deps") or {}).get("data/models/gru.pt", {}).get("hash")
            state = (experiment.get("executor") or {}).get("state", "success")
            found[experiment["name"]] = (
                state, params.get("models", {}).get("gru", {}).get("hidden_size"), metrics, weights)
    return found


def test_experiments_and_a_queued_sweep(clone):
    project = clone(pull=True)
    try:
        output = project.dvc("exp", "run", "-S", "models.gru.hidden_size=32").stdout
        assert stages_run(output) == ["evaluate@gru", "train@gru"]
        first = experiments(project)
        assert [hidden for _, hidden, _, _ in first.values()] == [32]
        # The README's command: the changed parameter in sight in 120 columns.
        table = terminal_table(project, "exp", "show", "--only-changed", "--drop", "data/",
                               "--no-pager")
        assert "models.gru.hidden_size" in table[1]

        project.git("checkout", "--", ".")  # back to the commit, for the sweep to start from
        project.dvc("exp", "run", "--queue", "-S", "models.gru.hidden_size=16,32")
        project.dvc("queue", "start", "-j", "2")
        deadline = time.monotonic() + 300
        while True:
            queued = {name: e for name, e in experiments(project).items() if name not in first}
            if len(queued) == 2 and all(s in ("success", "failed") for s, *_ in queued.values()):
                break
            assert time.monotonic() < deadline, f"queue still busy: {queued}"
            time.sleep(3)
        assert all(state == "success" and metrics for state, _, metrics, _ in queued.values()), queued
        sweep = {hidden: (metrics, weights) for _, hidden, metrics, weights in queued.values()}
        assert set(sweep) == {16, 32}
        assert sweep[16][1] != sweep[32][1]  # two models trained
        assert sweep[32] == next(iter(first.values()))[2:]  # same run: same metrics, same weights
        table = project.dvc("exp", "show", "--csv", "--sort-by", "metrics/gru.json:accuracy").stdout
        assert "metrics/gru.json:accuracy" in table.splitlines()[0]
        assert len(table.splitlines()) == 1 + 2 + 3  # header, workspace, main, 3 experiments
    finally:
        project.dvc("queue", "stop", "--kill", check=False)


# --- 5. The CI check that dvc.lock is current ------------------------------------------------

def check_lock(project):
    return project.run("bash", str(ROOT / ".ci/check-lock"), check=False)


def test_ci_check_fails_when_the_lock_is_stale(clone):
    bare = clone()  # as in CI: code, params, dvc.lock and metrics, but no data
    assert check_lock(bare).returncode == 0
    bare.edit_params("models.gru.hidden_size", 32)  # a stage whose inputs are missing here
    result = check_lock(bare)
    assert result.returncode == 1 and "dvc.lock is stale" in result.stderr
    bare.git("checkout", "--", ".")
    append_comment("stages/fetch.py")(bare)  # a stage whose inputs are all here
    result = check_lock(bare)
    assert result.returncode == 1 and "Running stage 'fetch'" in result.stderr
    bare.git("checkout", "--", ".")
    assert check_lock(bare).returncode == 0

    work = clone(pull=True)
    work.edit_params("baseline.C", 0.5)
    assert check_lock(work).returncode == 1
    work.dvc("repro")
    assert check_lock(work).returncode == 0
    work.commit("a new baseline C")
    assert check_lock(clone(work)).returncode == 0


# --- 6. The DAG ------------------------------------------------------------------------------

def test_dag_edges(origin):
    dot = origin.dvc("dag", "--dot").stdout
    edges = set(re.findall(r'^"([^"]+)" -> "([^"]+)";$', dot, re.M))
    expected = {("fetch", "split"), ("split", "vectorize"), ("vectorize", "baseline"),
                ("split", "baseline")}
    for model in MODELS:
        expected |= {("vectorize", f"train@{model}"), (f"train@{model}", f"evaluate@{model}"),
                     ("vectorize", f"evaluate@{model}"), ("split", f"evaluate@{model}")}
    sequence = "sequence/dvc.yaml:"  # the opt-in pipeline of sequence models
    expected |= {("split", f"{sequence}sequences"), ("vectorize", f"{sequence}sequences")}
    for model in SEQUENCE_MODELS:
        train, evaluate = f"{sequence}train@{model}", f"{sequence}evaluate@{model}"
        expected |= {(f"{sequence}sequences", train), ("vectorize", train), (train, evaluate),
                     (f"{sequence}sequences", evaluate), ("vectorize", evaluate), ("split", evaluate)}
    assert edges == expected
    ascii_dag = origin.dvc("dag").stdout
    assert all(name in ascii_dag for name in ALL)


# --- 7. The training curves ------------------------------------------------------------------

def test_training_curves_give_each_model_a_colour_and_dash_the_validation_slice(origin, tmp_path):
    vl_convert = pytest.importorskip("vl_convert")
    plots = json.loads(origin.dvc("plots", "show", "--json").stdout)["data"]
    spec = plots["loss per epoch"][0]["content"]
    assert spec["encoding"]["color"]["field"] == "model"
    assert {row["filename"] for row in spec["data"]["values"]} == {
        f"{model}.csv" for model in MODELS + SEQUENCE_MODELS}
    drawn = vl_convert.vegalite_to_svg(spec)
    legend = set(re.findall(r">(\w+)</text>", drawn))
    assert set(MODELS + SEQUENCE_MODELS) <= legend
    # No validation slice in this run: the template's dash only in the legend.  A log with one
    # (train.validation_fraction > 0) gains val_loss, drawn dashed.
    dashes = drawn.count('stroke-dasharray="6,3"')
    for row in spec["data"]["values"]:
        row["val_loss"] = str(float(row["loss"]) + 0.1)
    assert vl_convert.vegalite_to_svg(spec).count('stroke-dasharray="6,3"') > dashes

    png = tmp_path / "curves.png"
    origin.stage("plots", "--output", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
