"""The `hmgnn` command: thin Typer commands that parse options, load the config, call a step's `run`, and say
where the output went. All the work lives in the step modules, which run without the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hmgnn import __version__
from hmgnn.config import Config, load_config
from hmgnn.console import console, info
from hmgnn.errors import HmgnnError

app = typer.Typer(
    name="hmgnn",
    help="Personalised top-12 H&M fashion recommendations with a graph neural network.\n\n"
         "Steps: synth -> ingest -> build-graph -> sample -> train -> evaluate -> recommend. "
         "Each step reads the previous step's folder under --workdir and writes its own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Shared options, one place.
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file, e.g. configs/demo.toml.")]
WorkdirOpt = Annotated[Optional[Path], typer.Option("--workdir", "-w", help="Workdir (overrides the config's `workdir`).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: --set synth.customers=5000 (repeatable).")]
InOpt = Annotated[Optional[Path], typer.Option("--in", help="Input folder (default: the previous step's folder in the workdir).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: this step's folder in the workdir).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo the step even if its output is up to date.")]


def _config(config: Optional[Path], workdir: Optional[Path], overrides: Optional[list[str]]) -> Config:
    return load_config(config, overrides or [], workdir)


def _version(value: bool) -> None:
    if value:
        print(f"hmgnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (or set HMGNN_DEBUG=1).")] = False,
) -> None:
    if debug:
        os.environ["HMGNN_DEBUG"] = "1"


@app.command()
def synth(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None, out: OutOpt = None,
          force: ForceOpt = False) -> None:
    """Generate the three Kaggle CSVs (transactions_train, customers, articles), calibrated to real H&M data.

    Example: [bold]hmgnn synth -c configs/demo.toml[/bold]
    """
    cfg = _config(config, workdir, set_)
    from hmgnn import synth as step

    info(f"[green]synth[/green] wrote {step.run(cfg, out=out, force=force)}")


@app.command()
def ingest(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None,
           raw: Annotated[Optional[Path], typer.Option("--raw", "--in", help="Folder with the Kaggle files (.csv, .csv.zip or parquet) or the competition zip. Default: <workdir>/raw.")] = None,
           out: OutOpt = None, force: ForceOpt = False) -> None:
    """Read the Kaggle files into typed parquet tables with contiguous customer and article indices.

    Example: [bold]hmgnn ingest -c configs/demo.toml --raw ~/Downloads/h-and-m-personalized-fashion-recommendations.zip[/bold]
    """
    cfg = _config(config, workdir, set_)
    from hmgnn import ingest as step

    info(f"[green]ingest[/green] wrote {step.run(cfg, inp=raw, out=out, force=force)}")


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: known errors become one line on stderr and exit code 1."""
    import click
    from rich.markup import escape

    debug = os.environ.get("HMGNN_DEBUG") or "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(1)
    except HmgnnError as exc:
        if debug:
            raise
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # an unexpected failure: still one line unless debugging
        if debug:
            raise
        console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for the traceback)",
                      highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
