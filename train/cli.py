"""``mksgn train``, ``mksgn evaluate`` and ``mksgn summary``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

__all__ = ["train", "evaluate", "summary"]



def parse_sets(sets: tuple[str, ...]) -> dict:
    """--set KEY=VALUE strings -> {dotted key: YAML value} for ``load_config``."""
    out = {}
    for s in sets:
        key, eq, value = s.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{s!r}: expected KEY=VALUE, e.g. optim.lr=0.05", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_or_exit(config: Path, sets: dict):
    """``load_config`` with a config error as one line for the user (a ClickException)."""
    from .config import ConfigError, load_config
    try:
        return load_config(config, sets)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _common(f):
    opts = [
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                     help="Run config YAML (see mksgn/train/configs/). With --resume: optional, "
                          "RUN/config.yaml is used."),
        click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Run directory: config.yaml, best.pt, last.pt, metrics.csv/json."),
        click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
                     help="Prepared data root (or benchmark dir); overrides data.prepared."),
        click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (overrides device)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set optim.epochs=5 (YAML value). Repeatable."),
        click.option("--resume", is_flag=True, help="Continue RUN from last.pt (exactly, RNG included)."),
        click.option("--stop-after", type=click.IntRange(min=1), default=None,
                     help="Stop after N epochs in this call (resumable), e.g. for a job time limit."),
        click.option("--no-progress", is_flag=True, help="No progress bar (one line per epoch)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run(kind: str, config: Path | None, out: Path, data: Path | None, device: str | None,
         sets: tuple[str, ...], resume: bool, stop_after: int | None, no_progress: bool,
         teacher: Path | None = None) -> None:
    from .config import ConfigError
    from .loop import close_distributed, train as train_loop
    overrides = parse_sets(sets)
    if data is not None:
        overrides["data.prepared"] = str(data)
    if device is not None:
        overrides["device"] = device
    if teacher is not None:     # the file (a run directory's last.pt), so --resume keeps it
        from .checkpoint import resolve
        overrides["teacher"] = str(resolve(teacher))
    if config is None:
        if not resume:
            raise click.UsageError("--config is required (unless --resume)")
        config = out / "config.yaml"
    cfg = load_or_exit(config, overrides)
    if cfg.kind != kind:
        raise click.ClickException(f"{config}: kind is {cfg.kind!r}, but this is `train {kind}`")
    ok = False
    try:
        res = train_loop(cfg, out, resume=resume, stop_after=stop_after, progress=not no_progress)
        ok = True
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        close_distributed(ok)
    if res.metrics:
        click.echo(f"best test accuracy {res.best_acc:.4f}; wrote {out}")


@click.group()
def train() -> None:
    """Train the GCN teacher or the distilled spiking student.

    \b
    mksgn train teacher --config train/configs/synth_teacher.yaml \\
        --data PREP/xsub --out runs/t
    mksgn train student --config train/configs/synth_student.yaml \\
        --data PREP/xsub --teacher runs/t --out runs/s
    torchrun --nproc-per-node 2 -m mksgn.pipeline.cli train teacher ...
        # DDP (gloo on CPU, NCCL on GPU)
    """


@train.command("teacher")
@_common
def train_teacher(**kw) -> None:
    """Train the multi-stream CTR-GCN-class teacher."""
    _run("teacher", **kw)


@train.command("student")
@_common
@click.option("--teacher", type=click.Path(exists=True, path_type=Path),
              help="Teacher run directory or checkpoint (needed unless KD is switched off).")
def train_student(teacher: Path | None, **kw) -> None:
    """Train the MK-SGN spiking student, distilled from a frozen teacher."""
    _run("student", teacher=teacher, **kw)


def _console():
    from rich.console import Console
    return Console()


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path), metavar="RUN_OR_CKPT")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
              help="Prepared data root or benchmark dir (default: the run's data.prepared).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")
def evaluate(run: Path, data: Path | None, split: str, batch_size: int, device: str,
             json_out: Path | None) -> None:
    """Accuracy (and firing rate, parameters, MACs) of a trained model on a split.

    RUN_OR_CKPT: a checkpoint file, or a run directory (its last.pt)."""
    import torch

    from .checkpoint import load_model, write_text_atomic
    from .loop import evaluate as eval_loop, resolve_device
    from .summary import input_shape, summarize
    dev = resolve_device(device)
    try:
        model, info = load_model(run, map_location=dev)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        raise click.ClickException(f"{run}: cannot load: {e}") from None
    cfg = info["config"]
    if data is not None:
        cfg.data.prepared = str(data)
    try:
        ds = cfg.data.dataset(split, cfg.modalities, train=False)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if ds.num_classes != info["num_classes"] or ds.layout.name != info["layout"].name:
        raise click.ClickException(f"{cfg.data.benchmark_dir()}: {ds.num_classes} classes on "
                                   f"{ds.layout.name}, the model {info['num_classes']} on "
                                   f"{info['layout'].name}")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size)
    res = eval_loop(model, loader, dev)
    summ = summarize(model, info["kind"], input_shape(info["kind"], cfg.model, cfg.data.window,
                                                      ds.layout.num_joints))
    report = {"checkpoint": str(info["path"]), "kind": info["kind"], "epoch": info["epoch"],
              "data": str(cfg.data.benchmark_dir()), "split": split, **res,
              "params": summ.params, "macs": summ.macs}
    if summ.neurons is not None:
        report["neurons"] = summ.neurons
    con = _console()
    con.print(f"{info['kind']} {info['path']} (epoch {info['epoch']}) on {report['data']} [{split}]")
    con.print(f"  accuracy   {res['acc']:.4f} ({res['samples']} samples), loss {res['loss']:.4f}")
    if "firing_rate" in res:
        con.print(f"  mean firing rate {res['firing_rate']:.4f} spikes/neuron/step")
    con.print(f"  parameters {summ.params:,}   MACs/sample {summ.macs:,}")
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report, indent=1))


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=True, path_type=Path),
                metavar="CONFIG_OR_CKPT")
@click.option("--num-classes", type=click.IntRange(min=1), default=None,
              help="Classes, when a config's data is not prepared (known datasets are guessed).")
@click.option("--layout", "layout_name", default=None, help="Skeleton layout: ntu25 or ucla20.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def summary(source: Path, num_classes: int | None, layout_name: str | None, as_json: bool) -> None:
    """Parameters and MACs per sample of a model from a run config, checkpoint or run directory.

    For a student run (config or checkpoint) that names a teacher, the teacher is summarised too.
    """
    import torch

    from mksgn.data.layouts import get_layout

    from .checkpoint import build_model, load_model
    from .summary import input_shape, summarize
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    rows = []
    if source.suffix in (".yaml", ".yml"):
        cfg = load_or_exit(source, {})
        nc, lay = _classes_and_layout(cfg, num_classes, layout_name, source)
        torch.manual_seed(0)
        model = build_model(cfg.kind, cfg.model, nc, get_layout(lay))
        rows.append((cfg.kind, source, model, cfg))
    else:
        try:
            model, info = load_model(source)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
            raise click.ClickException(f"{source}: cannot load: {e}") from None
        cfg = info["config"]
        rows.append((info["kind"], info["path"], model, cfg))
    if cfg.kind == "student" and cfg.teacher and Path(cfg.teacher).exists():
        t_model, t_info = load_model(cfg.teacher)
        rows.append(("teacher", t_info["path"], t_model, t_info["config"]))
    out = []
    for kind, path, model, c in rows:
        s = summarize(model, kind, input_shape(kind, c.model, c.data.window, model.layout.num_joints))
        out.append({"source": str(path), **s.to_dict()})
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    from rich.table import Table
    # the sources go on their own lines: a path column would wrap letter by letter at 80 columns
    table = Table(title="model summary (MACs per sample, batch 1)", title_justify="left")
    for col in ("kind", "input (N,K,C,T,V,M)", "params", "MACs", "neurons"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "neurons") else "left",
                         no_wrap=True)
    for r in out:
        table.add_row(r["kind"], "x".join(map(str, r["input"])), f"{r['params']:,}",
                      f"{r['macs']:,}", "" if r["neurons"] is None else f"{r['neurons']:,}")
    con = _console()
    con.print(table)
    for r in out:
        con.print(f"{r['kind']}: {r['source']}", soft_wrap=True, highlight=False)


def _classes_and_layout(cfg, num_classes, layout_name, source) -> tuple[int, str]:
    info = cfg.data.benchmark_dir() / "info.json"
    if info.is_file() and (num_classes is None or layout_name is None):
        meta = json.loads(info.read_text())
        num_classes = num_classes or int(meta["num_classes"])
        layout_name = layout_name or meta["layout"]
    hay = f"{cfg.data.prepared} {source.name}".lower()
    # classes and skeleton of the named dataset (one home: mksgn.data.prepare.DATASET_SPECS)
    from mksgn.data.layouts import get_layout
    from mksgn.data.prepare import DATASET_SPECS
    for key, spec in DATASET_SPECS.items():
        nc, lay = spec.num_classes, get_layout(key).name
        if key in hay:
            num_classes = num_classes or nc
            layout_name = layout_name or lay
            break
    if num_classes is None or layout_name is None:
        raise click.ClickException(f"{source}: cannot tell the classes/layout (data not prepared); "
                                   "pass --num-classes and --layout")
    return num_classes, layout_name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train())
