"""Seed scikit-learn's 20 Newsgroups cache from a local 20news-bydate.tar.gz, the way scikit-learn
builds it after its own download, so that the seed scripts' fetch_20newsgroups(data_home=D,
download_if_missing=False) works offline.
usage: python bench/seed/sklearn_cache.py ARCHIVE DATA_HOME"""
import codecs, os, pickle, shutil, sys, tarfile, tempfile
from sklearn.datasets import load_files
from sklearn.datasets._base import _pkl_filepath

archive, home = sys.argv[1], sys.argv[2]
os.makedirs(home, exist_ok=True)
tmp = tempfile.mkdtemp(dir=home)
with tarfile.open(archive, "r:gz") as t:
    t.extractall(tmp, filter="data")
cache = dict(train=load_files(os.path.join(tmp, "20news-bydate-train"), encoding="latin1"),
             test=load_files(os.path.join(tmp, "20news-bydate-test"), encoding="latin1"))
with open(_pkl_filepath(home, "20news-bydate.pkz"), "wb") as f:
    f.write(codecs.encode(pickle.dumps(cache), "zlib_codec"))
shutil.rmtree(tmp)
print(len(cache["train"].data), len(cache["test"].data))
