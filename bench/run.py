"""Benchmark: the whole pipeline from a clean clone against the seed tutorial's scripts.

    python -m bench.run --repeats 3

On the real corpus ($NEWSGROUPS_ARCHIVE or --archive), each repeat
  1. clones the committed repository into a temporary folder and runs `dvc repro` (every
     stage, default parameters), measuring each stage's wall time and peak RSS;
  2. times a no-op `dvc repro`, then the rerun after editing models.gru.hidden_size;
  3. runs the seed tutorial's three scripts (bench/seed/{rnn,lstm,gru}.py) on the CPU,
so ours and the seed's alternate and share the machine's noise.  Prints one Markdown table
of medians (and writes it to --output).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("rnn", "lstm", "gru")
# The seed tutorial's scripts, as published but for the lines marked "# bench".
SEED = ROOT / "bench" / "seed"


def timed(command, cwd, env, log=None):
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    if log:
        log.write(result.stdout + result.stderr)
    return time.perf_counter() - started


def instrument(clone, stage_log):
    """Prefix every dvc.yaml command with bench.measure, named after its stage."""
    dvc_yaml = clone / "dvc.yaml"
    lines, stage = [], None
    for line in dvc_yaml.read_text().splitlines():
        header = re.match(r"^  ([\w-]+):\s*$", line)
        if header:
            stage = header.group(1)
        command = re.match(r"^(\s+)cmd: (.*)$", line)
        if command:
            name = stage + ("@${item.model}" if "${item.model}" in command.group(2) else "")
            line = (f"{command.group(1)}cmd: python -m bench.measure {stage_log} {name} -- "
                    f"{command.group(2)}")
        lines.append(line)
    dvc_yaml.write_text("\n".join(lines) + "\n")


def read_stages(stage_log, start=0):
    with open(stage_log) as f:
        return [json.loads(line) for line in f.readlines()[start:]]


def ours(workdir, env, log):
    clone = workdir / "clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    stage_log = workdir / "stages.jsonl"
    stage_log.unlink(missing_ok=True)
    instrument(clone, stage_log)
    result = {"repro": timed(["dvc", "repro"], clone, env, log)}
    result["stages"] = {s["stage"]: s for s in read_stages(stage_log)}
    for model in MODELS:  # before the edit below retrains the GRU
        metrics = json.loads((clone / "metrics" / f"{model}.json").read_text())
        timings = json.loads((clone / "data" / "timings" / f"{model}.json").read_text())
        result[model] = {"accuracy": metrics["accuracy"], "train_loop": timings["train_seconds"]}
    result["noop"] = timed(["dvc", "repro"], clone, env, log)
    params = (clone / "params.yaml").read_text()
    edited = re.sub(r"(\n  gru:\n(?:    .*\n)*?    hidden_size: )\d+", r"\g<1>64", params)
    assert edited != params, "could not find models.gru.hidden_size in params.yaml"
    (clone / "params.yaml").write_text(edited)
    before = len(read_stages(stage_log))
    result["gru_edit"] = timed(["dvc", "repro"], clone, env, log)
    result["gru_edit_stages"] = sorted(s["stage"] for s in read_stages(stage_log, before))
    return result


def seed(model, home, env, log):
    # On the CPU, as ours: the tutorial moves its model to a GPU when there is one, but not
    # the batches, so it would stop at the first one.
    out = subprocess.run([sys.executable, str(SEED / f"{model}.py"), str(home)],
                         env=dict(env, CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True,
                         check=True).stdout
    log.write(out)
    fields = dict(item.split("=") for item in out.strip().splitlines()[-1].split()[1:])
    return {"accuracy": float(fields["accuracy"]), "train_loop": float(fields["train_s"]),
            "total": float(fields["total_s"]), "peak_rss_mb": float(fields["peak_rss_mb"])}


def table(runs, seeds):
    med = statistics.median
    lines = ["| stage | wall s | peak RSS MB |", "|---|---:|---:|"]
    for stage in runs[0]["stages"]:
        lines.append(f"| {stage} | {med(r['stages'][stage]['seconds'] for r in runs):.1f} | "
                     f"{max(r['stages'][stage]['peak_rss_mb'] for r in runs)} |")
    seed_total = med(sum(s[m]["total"] for m in MODELS) for s in seeds)
    ours_total = med(r["repro"] for r in runs)
    lines += ["", "| | ours | seed | seed / ours |", "|---|---:|---:|---:|",
              f"| full `dvc repro` (all stages) vs the seed's three scripts, s | {ours_total:.1f} | "
              f"{seed_total:.1f} | {seed_total / ours_total:.1f}× |"]
    for m in MODELS:
        ours_loop, seed_loop = med(r[m]["train_loop"] for r in runs), med(s[m]["train_loop"] for s in seeds)
        lines.append(f"| {m}: training loop (10 epochs), s | {ours_loop:.1f} | {seed_loop:.1f} | "
                     f"{seed_loop / ours_loop:.1f}× |")
    for m in MODELS:
        lines.append(f"| {m}: test accuracy | {med(r[m]['accuracy'] for r in runs):.4f} | "
                     f"{med(s[m]['accuracy'] for s in seeds):.4f} | |")
    peak = max(s["peak_rss_mb"] for r in runs for s in r["stages"].values())
    seed_peak = max(s[m]["peak_rss_mb"] for s in seeds for m in MODELS)
    lines += [f"| peak RSS of any stage / script, MB | {peak} | {seed_peak:.0f} | |",
              f"| no-op `dvc repro`, s | {med(r['noop'] for r in runs):.1f} | | |",
              f"| `dvc repro` after editing models.gru.hidden_size, s "
              f"(reran {', '.join(runs[0]['gru_edit_stages'])}) | {med(r['gru_edit'] for r in runs):.1f} | | |"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", default=os.environ.get("NEWSGROUPS_ARCHIVE"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()
    if not args.archive or not Path(args.archive).is_file():
        sys.exit("bench: give the real corpus with --archive or $NEWSGROUPS_ARCHIVE")
    env = dict(os.environ, NEWSGROUPS_ARCHIVE=str(Path(args.archive).resolve()))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    with tempfile.TemporaryDirectory(prefix="newsgroups-bench-") as tmp:
        workdir = Path(tmp)
        home = workdir / "sklearn_data"
        subprocess.run([sys.executable, str(SEED / "sklearn_cache.py"), args.archive, str(home)],
                       check=True, capture_output=True)
        runs, seeds = [], []
        with open(workdir / "bench.log", "w") as log:
            for repeat in range(1, args.repeats + 1):
                runs.append(ours(workdir, env, log))
                print(f"bench {repeat}/{args.repeats}: ours {runs[-1]['repro']:.1f} s", file=sys.stderr)
                seeds.append({m: seed(m, home, env, log) for m in MODELS})
                print(f"bench {repeat}/{args.repeats}: seed "
                      f"{sum(s['total'] for s in seeds[-1].values()):.1f} s", file=sys.stderr)
    report = (f"{table(runs, seeds)}\n\nMedians of {args.repeats} runs on {os.cpu_count()} CPUs; "
              f"`python -m bench.run --repeats {args.repeats}`.\n")
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
