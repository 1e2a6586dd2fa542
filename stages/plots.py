"""Render the training curves of `dvc plots show` (or `dvc plots diff`) to one PNG, for the README.

    python -m stages.plots                          # the workspace's logs → docs/training-curves.png
    python -m stages.plots HEAD tfidf-gru           # two revisions (commits, experiments) side by side

Not a pipeline stage: it reads DVC's own Vega-Lite specs (`dvc plots show --json`, filled from
dvc.yaml's top-level `plots` and .dvc/plots/training.json), so the PNG is what `dvc plots show`
draws, without a browser (vl-convert-python bundles the Vega renderer).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from stages.errors import PipelineError, run_stage

# dvc.yaml's training-curve plots, drawn in this order, top to bottom.
PLOTS = ("loss per epoch", "accuracy per epoch")
DEFAULT_OUTPUT = Path("docs/training-curves.png")


def dvc_specs(revisions):
    """{plot id: Vega-Lite spec} from DVC, for the workspace or the given revisions."""
    command = ["dvc", "plots", "diff", *revisions] if revisions else ["dvc", "plots", "show"]
    try:
        result = subprocess.run([*command, "--json"], capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError("dvc is not on PATH; activate the project's environment") from None
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise PipelineError(f"`{' '.join(command)} --json` failed: {lines[-1]}")
    data = json.loads(result.stdout).get("data", {})
    return {name: renders[0]["content"] for name, renders in data.items()
            if renders and renders[0].get("type") == "vega"}


def combined(specs):
    """The training-curve charts one above the other (each with a panel per revision), as one
    Vega-Lite spec."""
    missing = [name for name in PLOTS if name not in specs]
    if missing:
        raise PipelineError(f"no data for the plot(s) {', '.join(missing)}: run `dvc repro` "
                            "first (the training logs are metrics/train/<model>.csv)")
    charts = [{key: value for key, value in specs[name].items() if key != "$schema"}
              for name in PLOTS]
    return {"$schema": specs[PLOTS[0]]["$schema"], "vconcat": charts,
            "resolve": {"scale": {"color": "shared", "strokeDash": "shared", "shape": "shared"}},
            "config": {"background": "white"}}


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m stages.plots", description=__doc__.split("\n")[0])
    parser.add_argument("revisions", nargs="*",
                        help="revisions to compare (`dvc plots diff`); none: the workspace")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"the PNG to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--scale", type=float, default=2.0, help="pixels per Vega-Lite unit")
    args = parser.parse_args(argv)
    import vl_convert

    spec = combined(dvc_specs(args.revisions))
    png = vl_convert.vegalite_to_png(spec, scale=args.scale)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(png)
    print(f"plots: {', '.join(PLOTS)} → {args.output}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
