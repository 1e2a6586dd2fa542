"""fetch: the 20 Newsgroups "bydate" corpus (both subsets) → data/corpus.parquet.

Source, in this order: the archive named by $NEWSGROUPS_ARCHIVE, the archive named by
``fetch.archive`` in params.yaml, else scikit-learn's download (its URL, published sha256
and cache).  Either way the documents and their order are the same: the order of
``sklearn.datasets.fetch_20newsgroups(subset="all")``, so that the seed's
``train_test_split`` can be reproduced exactly.

The archive is read as a stream and never extracted: no member is written anywhere, so
hostile paths cannot escape; they are still rejected, as are links, devices, oversized
members and tar bombs.
"""
import argparse
import bz2
import gzip
import lzma
import os
import sys
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from stages import params
from stages.errors import PipelineError, run_stage
from stages.files import write_json, write_parquet
from stages.paths import CORPUS, FETCH_REPORT

ARCHIVE_ENV = "NEWSGROUPS_ARCHIVE"
SUBSETS = ("train", "test")
FOLDERS = {f"20news-bydate-{subset}": subset for subset in SUBSETS}
# The largest message of the real corpus is well under 1 MiB, it has 18,888 members and
# unpacks to 50 MB; the limits stop a hostile or broken archive from exhausting memory.
MAX_MEMBER_BYTES = 4 * 2**20
MAX_MEMBERS = 100_000
# Counts every byte tarfile reads, headers included: tarfile reads a pax or long-name header
# whole into memory before any member check could see it.
MAX_ARCHIVE_BYTES = 256 * 2**20
OFFLINE_HELP = (f"set {ARCHIVE_ENV}=/path/to/20news-bydate.tar.gz (or fetch.archive in "
                "params.yaml) to use a local copy")
NOT_BYDATE = "not the 20news-bydate layout; use the original 20news-bydate.tar.gz"
HOSTILE = "refusing a hostile archive; use the original 20news-bydate.tar.gz"
# Magic bytes → decompressor, as tarfile's "r|*" would detect them.
DECOMPRESSORS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


class _Capped:
    """The decompressed archive as a stream that refuses to yield more than ``limit`` bytes."""

    def __init__(self, raw, archive, limit):
        magic = raw.read(6)
        raw.seek(0)
        self.stream = next((open_ for prefix, open_ in DECOMPRESSORS if magic.startswith(prefix)),
                           lambda f: f)(raw)
        self.archive, self.limit, self.total = archive, limit, 0

    def read(self, size=-1):
        room = self.limit - self.total + 1  # one byte past the limit proves it is exceeded
        data = self.stream.read(room if size is None or size < 0 else min(size, room))
        self.total += len(data)
        if self.total > self.limit:
            raise PipelineError(f"archive {self.archive} unpacks to more than {self.limit} bytes "
                                f"(a decompression bomb?); {HOSTILE}")
        return data


def read_archive(path):
    """Return [(subset, newsgroup, filename, raw bytes)] from a 20news-bydate.tar.gz."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"archive {path} does not exist or is not a file; {OFFLINE_HELP}")
    if path.stat().st_size == 0:
        raise PipelineError(f"archive {path} is empty; download it again")
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise PipelineError(f"cannot read archive {path}: {exc.strerror}; check its permissions") from None
    documents, folders, seen = [], set(), set()
    try:
        with raw, tarfile.open(fileobj=(stream := _Capped(raw, path, MAX_ARCHIVE_BYTES)),
                               mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise PipelineError(f"archive {path} has more than {MAX_MEMBERS} members "
                                        f"(a tar bomb?); {HOSTILE}")
                subset, group, name = _check_member(path, member)
                if subset is None:
                    continue
                if name is None:
                    folders.add((subset, group))
                    continue
                if (subset, group, name) in seen:
                    raise PipelineError(f"archive {path}: member {member.name!r} appears twice; "
                                        + NOT_BYDATE)
                seen.add((subset, group, name))
                documents.append((subset, group, name, tar.extractfile(member).read()))
            # tarfile takes a garbled header for the end of the archive, and so never reaches
            # the gzip checksum: read on to the end, so that a corrupt archive cannot pass for
            # a shorter one.  Only zero padding may follow the last member.
            while chunk := stream.read(2**20):
                if chunk.strip(b"\0"):
                    raise tarfile.ReadError("data after what tar read as the end of the archive")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise PipelineError(f"archive {path} is truncated or corrupt ({exc}); "
                            "download it again") from None
    _check_layout(path, documents, folders)
    return documents


def _check_member(archive, member):
    """(subset, newsgroup, message) of a member; message is None for a newsgroup folder and
    all three are None for another folder, which is skipped."""
    name = PurePosixPath(member.name)
    where = f"archive {archive}: member {member.name!r}"
    if name.is_absolute() or ".." in name.parts:
        raise PipelineError(f"{where} has an absolute or '..' path; {HOSTILE}")
    if member.issym() or member.islnk():
        raise PipelineError(f"{where} is a link; {HOSTILE}")
    parts = [part for part in name.parts if part != "."]
    if member.isdir():
        # Kept so that an empty newsgroup folder is noticed (see _check_layout).
        if len(parts) == 2 and parts[0] in FOLDERS:
            return FOLDERS[parts[0]], parts[1], None
        return None, None, None
    if not member.isfile():
        raise PipelineError(f"{where} is not a regular file (device or fifo); {HOSTILE}")
    if member.size > MAX_MEMBER_BYTES:
        raise PipelineError(f"{where} is {member.size} bytes, more than any message "
                            f"({MAX_MEMBER_BYTES} max); {HOSTILE}")
    if len(parts) != 3 or parts[0] not in FOLDERS:
        raise PipelineError(f"{where} is not at 20news-bydate-{{train,test}}/<newsgroup>/<message>;"
                            f" {NOT_BYDATE}")
    return FOLDERS[parts[0]], parts[1], parts[2]


def _check_layout(archive, documents, folders):
    groups = {subset: {} for subset in SUBSETS}
    for subset, group, _, _ in documents:
        groups[subset][group] = groups[subset].get(group, 0) + 1
    for subset in SUBSETS:
        if not groups[subset]:
            raise PipelineError(f"archive {archive} has no 20news-bydate-{subset} messages; "
                                + NOT_BYDATE)
    # scikit-learn's load_files would give an empty folder a label of its own, shifting the
    # labels of the newsgroups after it; refuse rather than silently differ.
    for subset, group in sorted(folders):
        if group not in groups[subset]:
            raise PipelineError(f"archive {archive}: newsgroup folder 20news-bydate-{subset}/"
                                f"{group} has no messages; {NOT_BYDATE}")
    train_only = set(groups["train"]) - set(groups["test"])
    test_only = set(groups["test"]) - set(groups["train"])
    if train_only or test_only:
        odd = sorted(train_only | test_only)[0]
        raise PipelineError(f"archive {archive}: newsgroup {odd} is in only one of train/test; "
                            + NOT_BYDATE)


def download():
    """scikit-learn's download of the official archive (sha256-verified, cached)."""
    import http.client

    from sklearn.datasets import fetch_20newsgroups

    documents = []
    for subset in SUBSETS:
        try:
            bunch = fetch_20newsgroups(subset=subset, shuffle=False, n_retries=1, delay=1.0)
        except (OSError, http.client.HTTPException) as exc:  # the latter: a dropped connection
            if "SHA256" in str(exc):
                raise PipelineError(f"download refused: {exc} The file was deleted; "
                                    "try again later or " + OFFLINE_HELP) from None
            raise PipelineError(f"cannot download 20 Newsgroups ({exc}); {OFFLINE_HELP}") from None
        for filename, text in zip(bunch.filenames, bunch.data):
            _, group, name = PurePosixPath(Path(filename).as_posix()).parts[-3:]
            documents.append((subset, group, name, text.encode("latin-1")))
    return documents


def sklearn_order(documents):
    """Train then test, each in the order of scikit-learn's cache (``load_files``).

    ``load_files`` sorts a subset by folder and file name, then shuffles it with
    RandomState(0).  ``fetch_20newsgroups(subset="all")`` concatenates train and test,
    keeps the selected categories and shuffles with RandomState(42): see build_table.
    """
    ordered = []
    for subset in SUBSETS:
        in_subset = sorted((d for d in documents if d[0] == subset), key=lambda d: (d[1], d[2]))
        indices = np.arange(len(in_subset))
        np.random.RandomState(0).shuffle(indices)
        ordered.extend(in_subset[i] for i in indices)
    return ordered


def strip(text, remove):
    if not remove:  # the default: spares the stage scikit-learn's import, seconds long
        return text
    from sklearn.datasets._twenty_newsgroups import (
        strip_newsgroup_footer, strip_newsgroup_header, strip_newsgroup_quoting)

    # Same order as fetch_20newsgroups applies them.
    if "headers" in remove:
        text = strip_newsgroup_header(text)
    if "footers" in remove:
        text = strip_newsgroup_footer(text)
    if "quotes" in remove:
        text = strip_newsgroup_quoting(text)
    return text


def build_table(documents, remove, categories):
    """The corpus table, in scikit-learn's order, and a report of what was read."""
    import pyarrow as pa

    ordered = sklearn_order(documents)
    names = sorted({group for _, group, _, _ in ordered})
    if categories is not None:
        missing = sorted(set(categories) - set(names))
        if missing:
            raise PipelineError(f"params.yaml: fetch.categories names {missing[0]}, which the "
                                f"corpus does not have; it has: {', '.join(names)}")
        names = sorted(categories)
        ordered = [d for d in ordered if d[1] in names]
    indices = np.arange(len(ordered))
    np.random.RandomState(42).shuffle(indices)
    ordered = [ordered[i] for i in indices]

    label = {name: i for i, name in enumerate(names)}
    texts, report = [], {"documents": len(ordered), "newsgroups": len(names),
                         "non_utf8_documents": 0, "nul_byte_documents": 0,
                         "empty_documents": 0}
    for _, _, _, raw in ordered:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            report["non_utf8_documents"] += 1
        report["nul_byte_documents"] += b"\0" in raw
        # latin-1, as scikit-learn decodes 20 Newsgroups: every byte is a character.
        text = strip(raw.decode("latin-1"), remove)
        report["empty_documents"] += not text.strip()
        texts.append(text)
    for subset in SUBSETS:
        report[f"{subset}_documents"] = sum(d[0] == subset for d in ordered)
    table = pa.table({
        "id": [f"20news-bydate-{s}/{g}/{n}" for s, g, n, _ in ordered],
        "subset": pa.array([s for s, _, _, _ in ordered]).dictionary_encode(),
        "newsgroup": pa.array([g for _, g, _, _ in ordered]).dictionary_encode(),
        "label": pa.array([label[g] for _, g, _, _ in ordered], pa.int16()),
        "text": pa.array(texts, pa.large_string()),
    })
    return table, report


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.fetch", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    p = params.load("fetch")
    archive = os.environ.get(ARCHIVE_ENV) or p["archive"]
    if archive:
        print(f"fetch: reading {archive}", file=sys.stderr)
        documents = read_archive(archive)
    else:
        print("fetch: no local archive; downloading with scikit-learn", file=sys.stderr)
        documents = download()
    table, report = build_table(documents, p["remove"], p["categories"])
    write_parquet(CORPUS, table)
    write_json(FETCH_REPORT, report)
    print(f"fetch: {report['documents']} documents, {report['newsgroups']} newsgroups "
          f"→ {CORPUS}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
