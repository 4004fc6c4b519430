"""``ragehr eval``: an ablation grid into ``results/<run>/``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ragehr.cli.common import (
    AnswerOpt,
    BatchWorkersOpt,
    RayOpt,
    _progress_enabled,
    _RichProgress,
    app,
    handle_errors,
)


@app.command("eval")
@handle_errors
def eval_(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (configs/experiments/...).")],
    run: Annotated[str | None, typer.Option("--run", help="Results folder name (default: the config's name).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard earlier predictions of this run.")] = False,
    ray: RayOpt = None,
    workers: BatchWorkersOpt = None,
    answer: AnswerOpt = None,
) -> None:
    """Run an ablation grid (strategies x budgets x retrievers x backends x datasets) into
    results/<run>/, resuming a killed run, and check its expected figures. With --ray, each
    condition of the grid runs as a Ray task. --answer runs every condition in that one answer
    mode (instead of the config's `answers`)."""
    from contextlib import nullcontext

    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import run_dir_for, run_experiment
    from ragehr.fsutil import read_user_bytes

    cfg = ExperimentConfig.from_file(config)
    if answer is not None:
        from ragehr.pipeline.ask import check_answer_mode

        check_answer_mode(answer)
        cfg = cfg.model_copy(
            update={
                "answers": (answer,),
                "backends": tuple(b.model_copy(update={"answers": None}) for b in cfg.backends),
            }
        )
    run_dir = run_dir_for(cfg, run, fresh=fresh)
    mapper = None
    cluster: Any = nullcontext()
    if ray is not None:
        from ragehr.distributed import RayCluster, ray_map

        cluster, mapper = RayCluster(ray, num_cpus=workers), ray_map
    with cluster, _RichProgress(enabled=_progress_enabled()) as bars:
        config_text = read_user_bytes(config, 16 << 20).decode("utf-8")
        metrics = run_experiment(cfg, run_dir, progress=bars, config_text=config_text, mapper=mapper)
    typer.echo((run_dir / "summary.md").read_text(encoding="utf-8"))
    for p in metrics["problems"]:
        typer.echo(f"warning: {p}", err=True)
    checks = metrics["expected"]
    failed = [c for c in checks if not c["ok"]]
    for c in checks:
        e = c["expectation"]
        val = c.get("value")
        shown = f"{val:.3f}" if isinstance(val, float) else str(val)
        typer.echo(f"{'OK  ' if c['ok'] else 'FAIL'} {e['metric']} {e['op']} {e['value']} {e['where']} -> {shown}")
    typer.echo(
        f"results in {run_dir}/ (predictions.jsonl, metrics.json, summary.md, summary.csv, plots/, manifest.json)",
        err=True,
    )
    if failed:
        raise typer.Exit(1)
