"""Shared fixtures: a tiny archive in the real 20news-bydate layout, and a throwaway copy of
the repository in which the real `git` and `dvc` commands run."""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Everything the suite writes outside its test repositories' own files goes under this git- and
# DVC-ignored folder instead of /tmp or /var/tmp (see pytest_configure).
SCRATCH = ROOT / ".pytest-tmp"
# What a clone of the project holds that the pipeline needs (no data, no metrics).
PROJECT_FILES = ("stages", "dvc.yaml", "sequence/dvc.yaml", "params.yaml", ".dvc/config", ".dvc/plots",
                 ".dvcignore", ".gitignore")

# Four newsgroups, each with words of its own plus words common to all, so that a model
# trained on a few dozen messages has something real to learn.
TOPICS = {
    "comp.graphics": "pixel render polygon shading texture bitmap vertex raytrace",
    "rec.sport.hockey": "puck goalie skate rink penalty slapshot playoff stanley",
    "sci.space": "orbit rocket shuttle nasa payload launch lunar satellite",
    "talk.religion.misc": "faith scripture prophet church sermon belief worship doctrine",
}
COMMON = "the a of and to is in that it for on with as was this".split()
MESSAGES_PER_GROUP = {"train": 24, "test": 10}


def message(group, number, rng):
    words = TOPICS[group].split()
    body = " ".join(rng.choice(words if rng.random() < 0.5 else COMMON) for _ in range(60))
    return (f"From: user{number}@example.com\nSubject: about {group} {number}\n"
            f"Organization: Tiny University\nLines: 3\n\n{body}\n\n> quoted line {number}\n"
            f"--\nsignature of user{number}\n")


def tiny_documents():
    """{archive path: bytes} in the 20news-bydate layout, with latin-1 bytes and CRLFs."""
    import random

    rng = random.Random(7)
    documents = {}
    number = 10000
    for subset, count in MESSAGES_PER_GROUP.items():
        for group in TOPICS:
            for _ in range(count):
                number += 1
                documents[f"20news-bydate-{subset}/{group}/{number}"] = (
                    message(group, number, rng).encode("latin-1"))
    first_train = next(iter(documents))
    documents[first_train] += "caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1")
    crlf = next(k for k in documents if k.startswith("20news-bydate-test/"))
    documents[crlf] = documents[crlf].replace(b"\n", b"\r\n")
    return documents


def write_archive(path, documents, extra=()):
    """A gzip tar of ``documents`` ({name: bytes}) plus any ``extra`` TarInfo members."""
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted({str(Path(n).parent) for n in documents} | {n.split("/")[0] for n in documents}):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in documents.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        for info, content in extra:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def pytest_configure(config):
    """For the whole session and every command it starts: the temporary folder in SCRATCH, so
    that pytest's own (tmp_path: SCRATCH/pytest-of-<user>/pytest-<n>, the last three runs kept,
    concurrent runs apart) and anything else asking for one land there; DVC's per-repository
    site cache there too (otherwise /var/tmp/dvc/repo/<hash>, one per test repository); and no
    usage reports from DVC (each `dvc` call would leave a file for its reporting daemon)."""
    (SCRATCH / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ.update(TMPDIR=str(SCRATCH / "tmp"), DVC_SITE_CACHE_DIR=str(SCRATCH / "dvc-site-cache"),
                      DVC_NO_ANALYTICS="1")
    tempfile.tempdir = None  # read TMPDIR again


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """stages/kernels.py's numba kernels, compiled once into stages/__pycache__ (seconds each
    time; loading them takes a fraction of one), for share_compiled_kernels to copy."""
    run([sys.executable, "-c", "import stages.kernels"], ROOT)


def share_compiled_kernels(stages):
    """Give a copy of stages/ (the folder ``stages``) the session's compiled kernels.  numba
    keys its cache by the source's size and modification time, which a git checkout resets."""
    source = ROOT / "stages" / "kernels.py"
    os.utime(stages / "kernels.py", ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    (stages / "__pycache__").mkdir(exist_ok=True)
    for compiled in (ROOT / "stages" / "__pycache__").glob("kernels.*.nb[ic]"):
        shutil.copy2(compiled, stages / "__pycache__")


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("archive") / "20news-bydate.tar.gz",
                         tiny_documents())


def run(cmd, cwd, env=None, check=True):
    """Run a command, returning CompletedProcess; on failure show its output."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                            shell=isinstance(cmd, str))
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stage_env(archive):
    """The environment a stage sees: the tiny archive, the venv's tools first on PATH, no usage
    reports from DVC (and the session's other settings: pytest_configure)."""
    env = dict(os.environ, NEWSGROUPS_ARCHIVE=str(archive), PYTHONHASHSEED="0", DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    return env


class Project:
    """A fresh copy of the repository (code and params, no data) under git, with helpers."""

    def __init__(self, path, archive):
        self.path, self.env = Path(path), stage_env(archive)
        path.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path / name)
        share_compiled_kernels(path / "stages")
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "test")
        self.commit("project")

    def run(self, *cmd, check=True):
        return run(list(cmd), self.path, self.env, check)

    def git(self, *args, check=True):
        return self.run("git", *args, check=check)

    def dvc(self, *args, check=True):
        return self.run("dvc", *args, check=check)

    def stage(self, module, *args, check=True):
        return self.run(sys.executable, "-m", f"stages.{module}", *args, check=check)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def edit_params(self, dotted_key, value):
        """Set one key of params.yaml, keeping the file's comments and layout."""
        from ruamel.yaml import YAML

        yaml = YAML()
        path = self.path / "params.yaml"
        data = yaml.load(path.read_text())
        *parents, last = dotted_key.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
        with open(path, "w") as f:
            yaml.dump(data, f)


@pytest.fixture
def project(tmp_path, tiny_archive):
    return Project(tmp_path / "repo", tiny_archive)
