"""Bad input and faults (issue 6): a clear error, nothing lost, nothing written where it shouldn't be.

Every refusal is a non-zero exit and one line on stderr, ``error: ...``, naming the file, key or
document at fault and what to do, with no traceback and no partial output.  Stages run as real
``python -m stages.<name>`` processes where the process matters (signals, file-size limits,
stderr as a user sees it); where a test replaces something inside the stage (the network, the
archive limits) or only needs speed, the stage's ``main`` runs through the same ``run_stage``
in this process.
"""
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import ROOT, Project, tiny_documents, write_archive

from stages import baseline, devices, evaluate, fetch, model, ragged, sequences, split, train, vectorize
from stages.errors import PipelineError, run_stage

FIRST_DOC = "20news-bydate-train/comp.graphics/10001"


# ---- helpers ---------------------------------------------------------------------------------
def refused(result, *needles):
    """Assert the contract for a refusal; return the error line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0]
    return errors[0]


def in_process(capsys, main, *argv):
    """``main`` through run_stage here, as ``python -m stages.<name>`` would run it."""
    capsys.readouterr()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        run_stage(main, list(argv))  # installs its own handlers
    except SystemExit as exc:
        code = exc.code
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def tree(root):
    """{path: (size, mtime)} of everything under ``root`` but Python's bytecode caches."""
    found = {}
    for path in Path(root).rglob("*"):
        if "__pycache__" not in path.parts:
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def outputs(project):
    """Every file under data/ and metrics/, hidden temporaries included."""
    return sorted(str(path.relative_to(project.path)) for folder in ("data", "metrics")
                  for path in (project.path / folder).rglob("*") if not path.is_dir())


def clone(source, path):
    """A copy of a prepared project (git, DVC cache, outputs), without .dvc/tmp (DVC's locks
    and state, which belong to the original)."""
    shutil.copytree(source.path, path, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    project = object.__new__(Project)
    project.path, project.env = Path(path), dict(source.env)
    return project


@pytest.fixture(scope="module")
def vectorized(tmp_path_factory, tiny_archive):
    """The tiny corpus through `dvc repro vectorize`: ready to train (a small LSTM)."""
    project = Project(tmp_path_factory.mktemp("vectorized") / "repo", tiny_archive)
    project.edit_params("models.lstm.hidden_size", 16)
    project.edit_params("train.epochs", 1)
    project.dvc("repro", "vectorize")
    project.commit("features")
    return project


@pytest.fixture
def ready(vectorized, tmp_path):
    return clone(vectorized, tmp_path / "repo")


# ---- archives --------------------------------------------------------------------------------
def good_bytes(folder):
    return write_archive(folder / "good.tar.gz", tiny_documents()).read_bytes()


def corrupt(data):
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


def renamed(old, new):
    return {name.replace(old, new): content for name, content in tiny_documents().items()}


def without(prefix):
    return {name: content for name, content in tiny_documents().items()
            if not name.startswith(prefix)}


def folder(name):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def member(name, size=1, kind=tarfile.REGTYPE, link=""):
    """A tar member of ``size`` zero bytes (links and devices carry none)."""
    has_data = kind in (tarfile.REGTYPE, tarfile.XHDTYPE)
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if has_data else 0, link
    info.devmajor, info.devminor = 1, 3  # /dev/null, for the device case
    return info, bytes(info.size) if has_data else None


def extra(*members):
    """A builder: the tiny archive with extra tar members (or functions of the folder)."""
    return lambda d: write_archive(d / "archive.tar.gz", tiny_documents(),
                                   [m(d) if callable(m) else m for m in members])


def raw(content):
    def build(d):
        path = d / "archive.tar.gz"
        path.write_bytes(content(d) if callable(content) else content)
        return path
    return build


# id → (builder of the archive in a folder, words the error must contain)
BAD_ARCHIVES = {
    "missing": (lambda d: d / "nowhere.tar.gz", ["does not exist", "NEWSGROUPS_ARCHIVE="]),
    "empty": (raw(b""), ["is empty", "download it again"]),
    "truncated gzip": (raw(lambda d: good_bytes(d)[:-1000]),
                       ["truncated or corrupt", "download it again"]),
    "corrupt gzip": (raw(lambda d: corrupt(good_bytes(d))), ["truncated or corrupt", "download it again"]),
    "not an archive": (raw(b"<html><body>404 Not Found</body></html>\n" * 40),
                       ["truncated or corrupt", "download it again"]),
    "no train/test folders": (lambda d: write_archive(d / "archive.tar.gz", renamed("20news-bydate-", "")),
                              ["'train/", "not the 20news-bydate layout"]),
    "no test folder": (lambda d: write_archive(d / "archive.tar.gz", without("20news-bydate-test/")),
                       ["no 20news-bydate-test messages", "not the 20news-bydate layout"]),
    "newsgroup in one subset": (
        lambda d: write_archive(d / "archive.tar.gz", without("20news-bydate-test/sci.space/")),
        ["newsgroup sci.space is in only one of train/test", "not the 20news-bydate layout"]),
    "empty newsgroup": (extra(folder("20news-bydate-train/misc.forsale"),
                              folder("20news-bydate-test/misc.forsale")),
                        ["20news-bydate-test/misc.forsale has no messages",
                         "not the 20news-bydate layout"]),
    "nested too deep": (extra(member("20news-bydate-train/sci.space/more/99999")),
                        ["'20news-bydate-train/sci.space/more/99999'", "not the 20news-bydate layout"]),
    "duplicate member": (extra(member(FIRST_DOC)), [f"'{FIRST_DOC}' appears twice",
                                                    "not the 20news-bydate layout"]),
}


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_bad_archive_is_refused(case, project, tmp_path, monkeypatch, capsys):
    build, needles = BAD_ARCHIVES[case]
    (tmp_path / "in").mkdir()
    archive = build(tmp_path / "in")
    before = tree(tmp_path)
    monkeypatch.chdir(project.path)
    monkeypatch.setenv(fetch.ARCHIVE_ENV, str(archive))
    refused(in_process(capsys, fetch.main), f"archive {archive}", *needles)
    assert tree(tmp_path) == before  # no corpus, no report, nothing else


# The member limits are scaled down so that the test archives stay small; the code path is the
# one the real limits take.
SCALED = {"MAX_MEMBERS": 2_000, "MAX_ARCHIVE_BYTES": 8 * 2**20}
HOSTILE = {
    "absolute path": (extra(lambda d: member(str(d.parent / "escaped"))), "absolute or '..' path"),
    "dot-dot path": (extra(member("20news-bydate-train/../../escaped")), "absolute or '..' path"),
    "symlink": (extra(lambda d: member("20news-bydate-train/sci.space/link", kind=tarfile.SYMTYPE,
                                       link=str(d.parent / "escaped"))), "is a link"),
    "hard link": (extra(member("20news-bydate-train/sci.space/link", kind=tarfile.LNKTYPE,
                               link=FIRST_DOC)), "is a link"),
    "device file": (extra(member("20news-bydate-train/sci.space/null", kind=tarfile.CHRTYPE)),
                    "not a regular file"),
    "fifo": (extra(member("20news-bydate-train/sci.space/pipe", kind=tarfile.FIFOTYPE)),
             "not a regular file"),
    "oversized member": (extra(member("20news-bydate-train/sci.space/99999",
                                      size=fetch.MAX_MEMBER_BYTES + 1)), "more than any message"),
    "thousands of tiny members": (
        extra(*(member(f"20news-bydate-train/sci.space/{n}") for n in range(90000, 92500))),
        "more than 2000 members"),
    "decompression bomb": (
        extra(*(member(f"20news-bydate-train/sci.space/{n}", size=3 * 2**20) for n in range(3))),
        "unpacks to more than"),
    # tarfile reads a pax header whole before any member check could look at it.
    "huge pax header": (extra(member("pax", size=9 * 2**20, kind=tarfile.XHDTYPE)),
                        "unpacks to more than"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archive_is_refused_and_nothing_escapes(case, project, tmp_path, monkeypatch, capsys):
    build, needle = HOSTILE[case]
    for name, limit in SCALED.items():
        monkeypatch.setattr(fetch, name, limit)
    (tmp_path / "in").mkdir()
    archive = build(tmp_path / "in")
    before = tree(tmp_path)
    monkeypatch.chdir(project.path)
    monkeypatch.setenv(fetch.ARCHIVE_ENV, str(archive))
    refused(in_process(capsys, fetch.main), f"archive {archive}", needle,
            "use the original 20news-bydate.tar.gz")
    assert tree(tmp_path) == before
    assert not (tmp_path / "escaped").exists()


def test_odd_bytes_and_empty_documents_are_kept_counted_and_handled_downstream(
        tmp_path, monkeypatch, capsys):
    from sklearn.datasets._twenty_newsgroups import (
        strip_newsgroup_footer, strip_newsgroup_header, strip_newsgroup_quoting)

    odd = {
        "20news-bydate-train/sci.space/90001": b"From: a@b\nSubject: x\n\nbad \xff\xfe\x81\xc3( orbit\n",
        "20news-bydate-train/comp.graphics/90002": b"From: a@b\nSubject: x\n\npixel\x00\x00render\n",
        "20news-bydate-train/rec.sport.hockey/90003": b"",
        "20news-bydate-test/sci.space/90004": b"From: a@b\nSubject: only headers\n\n",
        "20news-bydate-test/comp.graphics/90005": b"\x00" * 40,
    }
    documents = {**tiny_documents(), **odd}
    archive = write_archive(tmp_path / "odd.tar.gz", documents)
    project = Project(tmp_path / "repo", archive)
    for key, value in {"fetch.remove": ["headers", "footers", "quotes"],
                       "split.strategy": "bydate",  # empty documents on both sides
                       "train.epochs": 2, "train.batch_size": 1,  # a batch of one empty row
                       "models.lstm.hidden_size": 8}.items():
        project.edit_params(key, value)
    monkeypatch.chdir(project.path)
    monkeypatch.setenv(fetch.ARCHIVE_ENV, str(archive))
    for main, *argv in ((fetch.main,), (split.main,), (vectorize.main,), (train.main, "lstm"),
                        (evaluate.main, "lstm")):
        result = in_process(capsys, main, *argv)
        assert result.returncode == 0, result.stderr

    def strip(content):
        text = content.decode("latin-1")  # as scikit-learn decodes 20 Newsgroups
        return strip_newsgroup_quoting(strip_newsgroup_footer(strip_newsgroup_header(text)))

    def utf8(content):
        try:
            return content.decode("utf-8") is not None
        except UnicodeDecodeError:
            return False

    report = json.loads((project.path / "metrics/fetch.json").read_text())
    assert report["documents"] == len(documents)
    assert report["non_utf8_documents"] == sum(not utf8(c) for c in documents.values()) >= 2
    assert report["nul_byte_documents"] == 2
    assert report["empty_documents"] == sum(not strip(c).strip() for c in documents.values()) >= 3
    import pyarrow.parquet as pq

    corpus = pq.read_table(project.path / "data/corpus.parquet").to_pydict()
    texts = dict(zip(corpus["id"], corpus["text"]))
    for name, content in odd.items():
        assert texts[name] == strip(content)
    assert "\x00\x00" in texts["20news-bydate-train/comp.graphics/90002"]
    predictions = (project.path / "metrics/predictions/lstm.csv").read_text()
    assert "20news-bydate-test/sci.space/90004" in predictions


# ---- the download path ---------------------------------------------------------------------
@pytest.fixture
def downloading(project, tmp_path, monkeypatch):
    """fetch with no local archive; scikit-learn's data home in tmp_path; no real network."""
    import sklearn.datasets._base as base

    home = tmp_path / "scikit_learn_data"
    monkeypatch.delenv(fetch.ARCHIVE_ENV, raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(home))
    monkeypatch.setattr(base.time, "sleep", lambda seconds: None)  # sklearn's retry delay
    monkeypatch.chdir(project.path)
    calls = []

    def fake(writes):
        def urlretrieve(url, path):
            calls.append(url)
            if writes is None:
                raise URLError("[Errno -3] Temporary failure in name resolution")
            Path(path).write_bytes(writes)
        monkeypatch.setattr(base, "urlretrieve", urlretrieve)
        return calls
    return fake, home


def test_no_network_gives_the_offline_instructions(downloading, project, capsys):
    fake, home = downloading
    calls = fake(None)
    with pytest.warns(UserWarning, match="Retry downloading"):
        result = in_process(capsys, fetch.main)
    refused(result, "cannot download 20 Newsgroups", "Temporary failure in name resolution",
            "set NEWSGROUPS_ARCHIVE=/path/to/20news-bydate.tar.gz")
    assert calls and outputs(project) == []
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_checksum_mismatch_is_refused_and_nothing_is_cached(downloading, project, capsys):
    fake, home = downloading
    calls = fake(b"<html>a captive portal, not the archive</html>")
    refused(in_process(capsys, fetch.main), "download refused", "SHA256",
            "The file was deleted", "NEWSGROUPS_ARCHIVE=")
    assert len(calls) == 1 and outputs(project) == []
    assert [p for p in home.rglob("*") if p.is_file()] == []


# ---- parameters ------------------------------------------------------------------------------
# Every stage validates the whole params.yaml first, so the cheapest stage (fetch) shows each
# error; it never reaches the archive.  (key, value, words the error must contain)
BAD_PARAMS = [
    ("models.lstm.hiden_size", 64, ["unknown key models.lstm.hiden_size", "did you mean hidden_size"]),
    ("trian", {"epochs": 1}, ["unknown section trian", "did you mean train"]),
    ("train.epochs", "ten", ["train.epochs must be an integer, got 'ten'"]),
    ("train.lr", "fast", ["train.lr must be a number"]),
    ("models.gru.bidirectional", "yes", ["models.gru.bidirectional must be true or false"]),
    ("models.gru.hidden_size", 0, ["models.gru.hidden_size must be >= 1, got 0"]),
    ("split.test_size", 1.5, ["split.test_size must be in (0.0, 1.0), got 1.5"]),
    ("train.epochs", -1, ["train.epochs must be >= 1, got -1"]),
    ("models.rnn.cell", "transformer", ["models.rnn.cell must be one of rnn, lstm, gru"]),
    ("vectorize.weighting", "bm25", ["vectorize.weighting must be one of count, binary, tfidf"]),
    ("fetch.categories", ["sci.spaec"], ["fetch.categories has unknown newsgroup 'sci.spaec'",
                                         "did you mean sci.space"]),
    ("train.device", "gpu", ["train.device must be auto, cpu, cuda, cuda:<index> or mps"]),
    ("train.lr", float("nan"), ["train.lr must be a finite number, got nan"]),  # YAML's .nan
    ("train.weight_decay", float("inf"), ["train.weight_decay must be a finite number, got inf"]),
    ("models.gru.dropout", float("-inf"), ["models.gru.dropout must be a finite number, got -inf"]),
]


@pytest.mark.parametrize("key, value, needles", BAD_PARAMS, ids=[f"{k}={v}" for k, v, _ in BAD_PARAMS])
def test_bad_parameter_names_the_key_and_what_is_allowed(project, key, value, needles):
    project.edit_params(key, value)
    refused(project.stage("fetch", check=False), "params.yaml", *needles)
    assert outputs(project) == []


def test_unparsable_params_and_unknown_model_name(project, monkeypatch, capsys):
    monkeypatch.chdir(project.path)
    # No features exist: the parameters are checked before any data is read.
    refused(in_process(capsys, train.main, "transformer"), "no section models.transformer",
            "known models: rnn, lstm, gru")
    (project.path / "params.yaml").write_text("train:\n  epochs: [1\n")
    refused(in_process(capsys, train.main, "lstm"), "params.yaml is not valid YAML")


ABSENT_DEVICES = [
    pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
    f"cuda:{torch.cuda.device_count()}",  # one past the last visible GPU, on any machine
    pytest.param("mps", marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is here")),
]


@pytest.mark.parametrize("device", ABSENT_DEVICES)
def test_absent_device_is_an_error(device, project, monkeypatch, capsys):
    project.edit_params("train.device", device)
    monkeypatch.chdir(project.path)
    refused(in_process(capsys, train.main, "lstm"), f"train.device is {device}", "use device: auto")
    assert outputs(project) == []


def test_auto_device_never_fails(monkeypatch):
    assert devices.choose("auto").type in ("cuda", "mps", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.choose("auto") == torch.device("cpu")


# ---- faults during a run -------------------------------------------------------------------
def poison_features(project):
    import scipy.sparse

    path = project.path / "data/features/train.npz"
    matrix = scipy.sparse.load_npz(path)
    matrix.data[0] = float("nan")
    with open(path, "wb") as f:
        scipy.sparse.save_npz(f, matrix, compressed=False)


@pytest.mark.parametrize("cause", ["huge learning rate", "NaN in the features"])
def test_non_finite_loss_stops_training_at_its_epoch_and_batch(cause, ready, monkeypatch, capsys):
    if cause == "huge learning rate":
        ready.edit_params("train.lr", 1e38)  # finite, but the first Adam step overflows float32
    else:
        poison_features(ready)
    before = outputs(ready)
    monkeypatch.chdir(ready.path)
    error = refused(in_process(capsys, train.main, "lstm"), "train lstm: loss became nan",
                    "lower the learning rate (train.lr or models.lstm.lr) or check data/features/train.npz")
    assert re.search(r"at epoch 1, batch \d+;", error)
    assert outputs(ready) == before


def test_an_interrupt_inside_compiled_code_is_still_an_interrupt(capsys):
    # Ctrl-C while numba's kernel runs in autograd's backward reaches Python as a chain of
    # SystemErrors ("returned a result with an exception set") around the KeyboardInterrupt;
    # it must end like any interrupt (130), while a SystemError without a signal propagates.
    def interrupted_in_a_kernel(argv):
        try:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler raises before this ends
            except KeyboardInterrupt as exc:
                raise SystemError("<function _numba_unpickle> returned a result with an exception set") from exc
        except SystemError as exc:
            raise SystemError("CPUDispatcher returned a result with an exception set") from exc

    done = in_process(capsys, interrupted_in_a_kernel)
    assert done.returncode == 130 and done.stderr.startswith("interrupted by SIGINT"), done

    def broken(argv):
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        in_process(capsys, broken)


def test_training_killed_part_way_leaves_nothing_complete_and_repro_recovers(ready):
    ready.edit_params("train.epochs", 100_000)
    before = outputs(ready)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        # A shell's background job (`cmd &` without job control) inherits SIGINT ignored, and
        # Python then keeps ignoring it: give the stage the default disposition a user's has.
        process = subprocess.Popen([sys.executable, "-m", "stages.train", "lstm"], cwd=ready.path,
                                   env=ready.env, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            for line in process.stderr:  # until training is under way
                if line.startswith("train lstm: epoch 1/100000"):
                    break
            else:
                pytest.fail(f"training never started (exit {process.wait()})")
            process.send_signal(signum)
            rest = process.stderr.read()
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 128 + signum and "Traceback" not in rest, (signum, rest)
            assert rest.splitlines()[-1].startswith(f"interrupted by {signum.name}: "), rest
        assert outputs(ready) == before, signum  # no weights, no log, no temporary file

    ready.edit_params("train.epochs", 2)
    ran = ready.dvc("repro", "train@lstm").stdout
    assert "Running stage 'train@lstm'" in ran and "Running stage 'vectorize'" not in ran
    torch.load(ready.path / "data/models/lstm.pt", weights_only=True)
    assert len((ready.path / "metrics/train/lstm.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize("fault", ["disk full", "output folder is a file", "read-only folder"])
def test_unwritable_output_is_a_clear_error_with_no_partial_file(fault, ready):
    models = ready.path / "data/models"
    command = [sys.executable, "-m", "stages.train", "lstm"]
    if fault == "disk full":
        # A file-size limit of 1-2 KiB: the weights' write fails part-way with EFBIG, as on a
        # full disk (Python ignores SIGXFSZ, so the process is not killed).
        command = ["sh", "-c", 'ulimit -f 2 && exec "$@"', "sh", *command]
        needles = ["cannot write data/models/lstm.pt", "File too large", "check free space"]
    elif fault == "output folder is a file":
        models.write_text("not a folder\n")
        needles = ["cannot write data/models/lstm.pt", "data/models: File exists"]
    else:
        models.mkdir()
        models.chmod(0o555)
        try:
            (models / "probe").touch()
        except PermissionError:
            pass
        else:
            (models / "probe").unlink()
            models.chmod(0o755)
            pytest.skip("running as root, which chmod does not stop; 'disk full' and "
                        "'output folder is a file' cover the failing write")
        needles = ["cannot write data/models/lstm.pt", "Permission denied"]
    before = outputs(ready)
    try:
        result = subprocess.run(command, cwd=ready.path, env=ready.env, capture_output=True,
                                text=True)
    finally:
        if models.is_dir():
            models.chmod(0o755)
    refused(result, *needles)
    assert outputs(ready) == before


# ---- broken artifacts -------------------------------------------------------------------------
def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def garbage(path):
    path.write_bytes(b"not what the pipeline wrote\n" * 40)


def weights_file(path):
    train.save_weights(path, {"config": {"cell": "lstm"}, "state_dict": {"w": torch.zeros(64, 64)}})


def sequences_file(path):
    ragged.save(path, ragged.Ragged.from_rows([[1, 2, 3]] * 50))


def vocabulary_file(path):
    """The sequence vocabulary, beside the train sequences (one per labelled document) that
    the train stage reads first."""
    path.write_text(json.dumps([f"word{i}" for i in range(10)]))
    with np.load(path.parents[1] / "features/labels.npz") as labels:
        count = len(labels["train"])
    ragged.save(path.parent / "train.npz", ragged.Ragged.from_rows([[1, 2, 3]] * count))


# file → (how to make it where the vectorized project has none, the stage that reads it, the
# kind of file the error names, the pipeline that rebuilds it)
ARTIFACTS = {
    "data/corpus.parquet": (None, (split.main,), "Parquet table", "dvc repro"),
    "data/split/train.parquet": (None, (vectorize.main,), "Parquet table", "dvc repro"),
    "data/features/train.npz": (None, (baseline.main,), "sparse feature matrix", "dvc repro"),
    "data/features/labels.npz": (None, (baseline.main,), "labels array", "dvc repro"),
    "data/features/meta.json": (None, (train.main, "lstm"), "JSON file", "dvc repro"),
    "data/features/vectorizer.joblib": (None, (sequences.main,), "fitted vectorizer", "dvc repro"),
    "data/sequences/train.npz": (sequences_file, (train.main, "gru_seq"), "ragged array",
                                 "dvc repro sequence/dvc.yaml"),
    "data/sequences/vocabulary.json": (vocabulary_file, (train.main, "gru_seq"), "JSON file",
                                       "dvc repro sequence/dvc.yaml"),
    "data/models/lstm.pt": (weights_file, (evaluate.main, "lstm"), "checkpoint", "dvc repro"),
}


@pytest.mark.parametrize("damage", [truncate, garbage], ids=["truncated", "garbage"])
@pytest.mark.parametrize("name", ARTIFACTS)
def test_broken_artifact_names_the_file_and_the_fix(name, damage, ready, monkeypatch, capsys):
    make, (main, *argv), kind, rebuild = ARTIFACTS[name]
    path = ready.path / name
    if make:
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    damage(path)
    before = tree(ready.path / "data"), outputs(ready)
    monkeypatch.chdir(ready.path)
    refused(in_process(capsys, main, *argv), f"{name} is not a readable {kind} (",
            f"`dvc checkout --force {name}`", f"`dvc pull --force {name}`",
            f"rebuild it with `{rebuild}`")
    assert (tree(ready.path / "data"), outputs(ready)) == before


def test_the_fix_a_broken_artifact_names_restores_it(ready, monkeypatch, capsys):
    path = ready.path / "data/features/train.npz"
    good = path.read_bytes()
    truncate(path)
    monkeypatch.chdir(ready.path)
    refused(in_process(capsys, baseline.main), "dvc checkout --force data/features/train.npz")
    ready.dvc("checkout", "--force", "data/features/train.npz")
    assert path.read_bytes() == good


def test_a_checkpoint_for_other_code_is_a_broken_artifact(ready, monkeypatch, capsys):
    weights_file(ready.path / "data/models/lstm.pt")  # loads, but is no model of this code
    monkeypatch.chdir(ready.path)
    refused(in_process(capsys, evaluate.main, "lstm"),
            "data/models/lstm.pt is not a readable checkpoint of this pipeline's models",
            "`dvc checkout --force data/models/lstm.pt`")


@pytest.mark.parametrize("memory_known", [True, False], ids=["checked first", "allocator refuses"])
def test_model_too_large_to_allocate_names_the_parameter(memory_known, ready, monkeypatch, capsys):
    ready.edit_params("models.gru.hidden_size", 100_000_000)  # weights of about 11,000 GiB
    if not memory_known:  # as where /proc/meminfo is missing: the allocation itself fails
        monkeypatch.setattr(model, "_available_memory", lambda: None)
    before = outputs(ready)
    monkeypatch.chdir(ready.path)
    refused(in_process(capsys, train.main, "gru"),
            "params.yaml: models.gru.hidden_size is 100000000", "GiB", "lower it")
    assert outputs(ready) == before


@pytest.mark.parametrize("key, value, blamed", [
    ("hidden_size", 10**6, "models.m.hidden_size"), ("num_layers", 10**6, "models.m.num_layers"),
    ("embedding_dim", 10**9, "models.m.embedding_dim"), ("vocab_size", 10**10, "sequences.max_features"),
])
def test_the_parameter_blamed_is_the_one_that_makes_the_model_large(key, value, blamed):
    config = dict(cell="lstm", vocab_size=10000, num_classes=20, hidden_size=128, num_layers=1,
                  dropout=0.0, bidirectional=True, input="sequence", embedding_dim=128,
                  pooling="max", max_length=10)
    with pytest.raises(PipelineError, match=f"{blamed} is {value}:"):
        model.build(dict(config, **{key: value}), "m")


@pytest.mark.parametrize("input_mode", ["bow", "sequence"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_weight_count_is_the_models_own(input_mode, cell):
    for layers, bidirectional in ((1, False), (3, True)):
        config = dict(cell=cell, vocab_size=50, num_classes=4, hidden_size=7, num_layers=layers,
                      dropout=0.0, bidirectional=bidirectional, input=input_mode,
                      embedding_dim=5, pooling="max", max_length=10)
        built = model.build(config)
        assert model.weight_count(config) == sum(p.numel() for p in built.parameters())


class RunsCode:
    """Unpickling this runs a shell command: what a hostile .pt file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("form", ["torch.save", "plain pickle"])
def test_loading_weights_never_runs_code_from_the_file(form, project, tmp_path):
    marker = tmp_path / "code-ran"
    path = project.path / "data/models/lstm.pt"
    path.parent.mkdir(parents=True)
    if form == "torch.save":
        torch.save({"config": RunsCode(marker), "state_dict": {}}, path)
    else:
        path.write_bytes(pickle.dumps(RunsCode(marker)))
    refused(project.stage("evaluate", "lstm", check=False), "data/models/lstm.pt was refused",
            "weights_only=True", "`dvc pull` from a trusted remote")
    assert not marker.exists()
    assert not (project.path / "metrics").exists()
    # The file is a real threat: an unrestricted load runs its command.
    with open(path, "rb") as f:
        torch.load(f, weights_only=False) if form == "torch.save" else pickle.load(f)
    assert marker.exists()


def test_no_stage_unpickles_what_it_reads():
    """Only the pipeline's own vectorizer and baseline are unpickled (by sequences and predict;
    the README says so); every torch.load is weights_only."""
    for source in (ROOT / "stages").glob("*.py"):
        code = source.read_text()
        assert "pickle.load" not in code, source
        for call in re.findall(r"joblib\.load\([^)]*\)+", code):
            assert call in ("joblib.load(VECTORIZER)", "joblib.load(BASELINE_MODEL)"), (source, call)
        for call in re.findall(r"torch\.load\([^)]*\)", code):
            assert "weights_only=True" in call, (source, call)
