"""The `hmgnn` command: thin Typer commands that parse options, load the config, call a step's `run`, and say
where the output went. All the work lives in the step modules, which run without the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hmgnn import __version__
from hmgnn.config import MAX_K, Config, load_config
from hmgnn.console import console, info
from hmgnn.errors import HmgnnError, Interrupted, UsageError

app = typer.Typer(
    name="hmgnn",
    help="Personalised top-12 H&M fashion recommendations with a graph neural network.\n\n"
         "Steps: synth -> ingest -> build-graph -> sample -> train -> evaluate -> recommend. "
         "Each step reads the previous step's folder under --workdir and writes its own.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Shared options, one place.
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file, or the name of a packaged config (demo, tiny, seed-scale, full, ...): -c demo.")]
WorkdirOpt = Annotated[Optional[Path], typer.Option("--workdir", "-w", help="Workdir (overrides the config's `workdir`).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: --set synth.customers=5000 (repeatable).")]
InOpt = Annotated[Optional[Path], typer.Option("--in", help="Input folder (default: the previous step's folder in the workdir).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: this step's folder in the workdir).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo the step even if its output is up to date.")]
KOpt = Annotated[Optional[int], typer.Option("--k", min=1, max=MAX_K, help="Articles per customer (default: recommend.k, 12).")]
ModelDirOpt = Annotated[Optional[Path], typer.Option("--model-dir", help="A model folder (the model/ `hmgnn train` writes, copied anywhere): load it alone, without a workdir.")]


def _config(config: Optional[Path], workdir: Optional[Path], overrides: Optional[list[str]],
            model_dir: Optional[Path] = None) -> Config:
    if model_dir is not None:
        from hmgnn import artifacts
        from hmgnn.errors import InputError

        if workdir is not None:
            raise UsageError("pass --workdir or --model-dir, not both: a model folder loads without a workdir")
        if not artifacts.locate(model_dir).model_folder:
            raise InputError(f"--model-dir {model_dir}: no {artifacts.MODEL_PT} there; pass the model/ folder that "
                             "`hmgnn train` wrote (e.g. work/demo/model), or a copy of it")
        workdir = model_dir  # a model folder stands where the workdir goes: it holds its own data
    return load_config(config, overrides or [], workdir)


def _wrote(step: str, out: Path) -> None:
    """Where a step wrote its output; nothing more when it found the output up to date (it said so)."""
    from hmgnn import artifacts

    if not artifacts.was_skipped(out):
        info(f"[green]{step}[/green] wrote {out}")


def _model_option(value: Optional[str]) -> Optional[str]:
    """`--model`: a name the registry knows (or auto), checked while parsing (`recommend`: after its stored answers),
    so a typo is a usage error (exit 2)."""
    if value is None or value == "auto":  # the default needs no registry (nor torch, which it imports)
        return value
    from hmgnn.registry import AUTO, model_names

    if value != AUTO and value not in model_names():
        raise typer.BadParameter(f"unknown model {value!r}; known: {AUTO}, {', '.join(model_names())}")
    return value


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

    Example: [bold]hmgnn synth -c demo[/bold]
    """
    cfg = _config(config, workdir, set_)
    from hmgnn import synth as step

    _wrote("synth", step.run(cfg, out=out, force=force))


@app.command()
def ingest(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None,
           raw: Annotated[Optional[Path], typer.Option("--raw", "--in", help="Folder with the Kaggle files (.csv, .csv.zip or parquet) or the competition zip. Default: <workdir>/raw.")] = None,
           out: OutOpt = None, force: ForceOpt = False,
           lenient: Annotated[bool, typer.Option("--lenient", help="Leave out rows with impossible values (dates after today or cut off from the rest, negative prices, malformed ids, rows cut short; ages outside 0-120 become missing) and say how many, instead of refusing the files (shortcut for --set ingest.lenient=true).")] = False) -> None:
    """Read the Kaggle files into typed parquet tables with contiguous customer and article indices.

    Example: [bold]hmgnn ingest -c demo --raw ~/Downloads/h-and-m-personalized-fashion-recommendations.zip[/bold]
    """
    cfg = _config(config, workdir, list(set_ or []) + (["ingest.lenient=true"] if lenient else []))
    from hmgnn import ingest as step

    _wrote("ingest", step.run(cfg, inp=raw, out=out, force=force))


@app.command("build-graph")
def build_graph(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None,
                tables: Annotated[Optional[Path], typer.Option("--tables", "--in", help="Folder with the ingested tables. Default: <workdir>/tables.")] = None,
                out: OutOpt = None, force: ForceOpt = False) -> None:
    """Build the customer-buys-article graph (PyG HeteroData) with customer and article features.

    Example: [bold]hmgnn build-graph -c demo --set graph.text_dim=16[/bold]
    """
    cfg = _config(config, workdir, set_)
    from hmgnn import graph as step

    _wrote("build-graph", step.run(cfg, inp=tables, out=out, force=force))


@app.command()
def sample(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None,
           customers: Annotated[Optional[int], typer.Option("--customers", help="Keep N customers with their complete histories (shortcut for --set sample.customers=N).")] = None,
           graph: Annotated[Optional[Path], typer.Option("--graph", "--in", help="Folder with graph.pt. Default: <workdir>/graph.")] = None,
           out: OutOpt = None, force: ForceOpt = False) -> None:
    """Split purchases by time into history / validation / test (no leakage) and draw the fixed negatives.

    Example: [bold]hmgnn sample -c demo --customers 5000[/bold]
    """
    overrides = list(set_ or []) + ([f"sample.customers={customers}"] if customers is not None else [])
    cfg = _config(config, workdir, overrides)
    from hmgnn import sample as step

    _wrote("sample", step.run(cfg, inp=graph, out=out, force=force))


@app.command()
def train(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None, inp: InOpt = None,
          out: OutOpt = None, force: ForceOpt = False,
          recipe: Annotated[Optional[str], typer.Option("--recipe", help="gnn (default) or reference (the reference project's recipe).")] = None,
          device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda.")] = None) -> None:
    """Train the GNN on the history window, select it on the validation window (resumes after a kill).

    Example: [bold]hmgnn train -c demo[/bold]   (reference recipe: [bold]--recipe reference[/bold])
    """
    extra = ([f"train.recipe={recipe}"] if recipe else []) + ([f"train.device={device}"] if device else [])
    cfg = _config(config, workdir, (set_ or []) + extra)
    from hmgnn import train as step

    _wrote("train", step.run(cfg, inp=inp, out=out, force=force))


@app.command()
def evaluate(config: ConfigOpt = None, workdir: WorkdirOpt = None, set_: SetOpt = None, inp: InOpt = None,
             out: OutOpt = None, force: ForceOpt = False) -> None:
    """Score every model on the held-out week: MAP@12 as Kaggle scored it, recall, NDCG, coverage, AUC and F1.

    Example: [bold]hmgnn evaluate -c demo --set evaluate.models="['popular','trending']"[/bold]
    """
    cfg = _config(config, workdir, set_)
    from rich.console import Console

    from hmgnn import evaluate as step

    path = step.run(cfg, inp=inp, out=out, force=force)
    Console(width=None if sys.stdout.isatty() else 160).print(step.metrics_table(path))  # piped: never cut
    _wrote("evaluate", path)


@app.command()
def recommend(config: ConfigOpt = None, workdir: WorkdirOpt = None, model_dir: ModelDirOpt = None, set_: SetOpt = None,
              customer_id: Annotated[Optional[str], typer.Option("--customer-id", help="A customer_id from customers.csv (64 hex characters).")] = None,
              all_: Annotated[bool, typer.Option("--all", help="Recommend for every customer in tables/customers.parquet (needs --out).")] = False,
              out: Annotated[Optional[Path], typer.Option("--out", help="With --all: submission.csv (Kaggle format) or recs.parquet.")] = None,
              k: KOpt = None,
              filter_bought: Annotated[bool, typer.Option("--filter-bought", help="Leave out the articles the customer already bought (the next-best take their places).")] = False,
              model: Annotated[Optional[str], typer.Option("--model", help="auto (the default: gnn once `hmgnn train` has run, else trending), gnn, gnn-retrieval, als, popular, popular-new, repurchase or trending.")] = None,
              json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Top-k articles for one customer (table or JSON on stdout), or for everybody as a Kaggle submission.

    Examples: [bold]hmgnn recommend -c demo --customer-id 0000217fb6acf148c7665f1e5c8f49e13e30c94120537c05546e15d11809bd3c --json[/bold]
    [bold]hmgnn recommend -c demo --all --out submission.csv[/bold]   ([bold]--filter-bought[/bold]: none that the customer bought)
    [bold]hmgnn recommend --model-dir ~/models/hm --customer-id ...[/bold]   (a copied model/ folder)
    """
    import json

    overrides = list(set_ or [])
    if k is not None:
        overrides.append(f"recommend.k={k}")
    if model is not None:
        overrides.append(f"recommend.model={json.dumps(model)}")
    cfg = _config(config, workdir, overrides, model_dir)
    from rich.console import Console

    from hmgnn import answers

    result = None
    if customer_id is not None and not all_ and out is None:  # the answer `hmgnn train` stored, where it holds
        result = answers.lookup(cfg.workdir, cfg.recommend.model, customer_id, cfg.recommend.k, filter_bought)
    if result is None:
        # --model is checked here, not while parsing: the registry imports torch, which a stored answer never needs
        # (and names only a model it knows)
        try:
            _model_option(model)
        except typer.BadParameter as e:
            raise UsageError(f"--model: {e.message}") from None
        from hmgnn import recommend as step

        result = step.run(cfg, customer_id=customer_id, all_customers=all_, out=out, filter_bought=filter_bought)
    if isinstance(result, Path):
        info(f"[green]recommend[/green] wrote {result}")
    elif json_:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 160).print(answers.render_table(result))  # piped: never cut
        if result.fallback:
            info(f"[yellow]fallback[/yellow]: {result.fallback}")


@app.command()
def update(config: ConfigOpt = None, workdir: WorkdirOpt = None,
           raw: Annotated[Path, typer.Option("--raw", help="Folder with the new purchases: transactions_train.csv (or parquet) dated after the data's last day, and customers.csv / articles.csv with the new customers and articles (optional).")] = ...,
           model_dir: Annotated[Optional[Path], typer.Option("--model-dir", "--model", help="Update a model folder alone (a copied model/), not a workdir.")] = None,
           set_: SetOpt = None,
           refit_ranker: Annotated[bool, typer.Option("--refit-ranker", help="Also fit the ranker again on the newest label window (the GNN's weights are kept).")] = False) -> None:
    """Add a later week of purchases to a trained model without training it again (as of the new last day).

    Example: [bold]hmgnn update -c demo --raw new-week/[/bold]   ([bold]--model-dir ~/models/hm[/bold]: a copied model folder alone)
    """
    cfg = _config(config, workdir, set_, model_dir)
    from hmgnn import update as step

    record = step.run(cfg, raw, refit_ranker=refit_ranker)
    info(f"[green]update[/green]: {cfg.workdir} answers as of {record['through']} ({record['transactions']:,} purchases "
         f"and {step.counted(record)} added{'; the ranker fit again' if record['ranker_refit'] else ''})")


@app.command()
def init(name: Annotated[str, typer.Argument(help="Packaged config to start from: demo, tiny, seed-scale, full, movielens, dunnhumby or onlineretail.")] = "demo",
         out: Annotated[Optional[Path], typer.Option("--out", help="File to write (default: <name>.toml here).")] = None,
         force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False) -> None:
    """Write a packaged config to a file to edit (a pip install has no configs/ folder; `-c <name>` also works).

    Example: [bold]hmgnn init demo && hmgnn synth -c demo.toml[/bold]
    """
    from hmgnn.config import packaged_configs
    from hmgnn.errors import InputError

    configs = packaged_configs()
    if name not in configs:
        raise UsageError(f"no packaged config {name!r}; there are {', '.join(sorted(configs))}")
    target = out or Path(f"{name}.toml")
    if target.exists() and not force:
        raise InputError(f"{target} exists; pass --force to overwrite it or --out to write elsewhere")
    from hmgnn import artifacts

    artifacts.atomic_write_text(target, configs[name])
    info(f"[green]init[/green] wrote {target} (edit it, then: hmgnn synth -c {target})")


@app.command()
def export(config: ConfigOpt = None, workdir: WorkdirOpt = None, model_dir: ModelDirOpt = None, set_: SetOpt = None,
           embeddings: Annotated[Path, typer.Option("--embeddings", help="Parquet file to write: kind (customer | article), id, embedding.")] = ...,
           model: Annotated[str, typer.Option("--model", callback=_model_option, help="gnn or auto (the default: the trained gnn).")] = "auto") -> None:
    """Export the trained GNN's customer and article embeddings, e.g. for a vector database.

    Example: [bold]hmgnn export -c demo --embeddings embeddings.parquet[/bold]
    """
    cfg = _config(config, workdir, set_, model_dir)
    from hmgnn import api

    out = api.load(cfg.workdir, model=model, config=config, overrides=set_ or []).export_embeddings(embeddings)
    info(f"[green]export[/green] wrote {out}")


@app.command()
def serve(config: ConfigOpt = None, workdir: WorkdirOpt = None, model_dir: ModelDirOpt = None, set_: SetOpt = None,
          model: Annotated[Optional[str], typer.Option("--model", callback=_model_option, help="auto (the default: gnn once `hmgnn train` has run, else trending), gnn, or another model name (only gnn gives similar articles).")] = None,
          host: Annotated[Optional[str], typer.Option("--host", help="Interface to bind (default 127.0.0.1; 0.0.0.0 exposes the API to the network).")] = None,
          port: Annotated[Optional[int], typer.Option("--port", help="TCP port (default 8000).")] = None) -> None:
    """Serve recommendations over HTTP: per customer, in batches, similar articles; API docs at /docs.

    Example: [bold]hmgnn serve -c demo --model gnn --port 8000[/bold]
    (after retraining: [bold]curl -X POST http://127.0.0.1:8000/admin/reload[/bold], or send SIGHUP)
    """
    import json

    overrides = list(set_ or [])
    for key, value in (("model", model), ("host", host), ("port", port)):
        if value is not None:
            overrides.append(f"serve.{key}={json.dumps(value)}")
    cfg = _config(config, workdir, overrides, model_dir)
    from hmgnn import serve as step

    step.run(cfg)


_POLARS = f"{os.sep}polars{os.sep}"
"""Where polars' Python code lives: its native calls check for signals themselves and stop halfway (its worker
threads go on writing into a folder that is being removed, and now and then print a panic)."""


_WAITING: set[int] = set()
"""Signals `_stop` is waiting to raise until a polars call returns."""


def _stop(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM stop the running step (KeyboardInterrupt, Interrupted): its StepOutput removes the
    temporary folder and the CLI exits 130 or 143. Two moments wait instead: inside a polars call the stop comes
    when the call has returned (the signal is raised again every 50 ms until then), and once the step's output is in
    place the signal is ignored: the output is complete, what is left is saying so. (Inside an
    `artifacts.uninterrupted` block the signal is held until the block ends.)"""
    import _thread
    import signal
    import threading

    from hmgnn import artifacts

    if (artifacts.completed_outputs() and signum not in _WAITING) or artifacts.hold_signal(signum):
        return
    if getattr(getattr(frame, "f_code", None), "co_filename", "").find(_POLARS) >= 0:
        _WAITING.add(signum)  # it came before the output was complete: it stops the step even if that completes
        timer = threading.Timer(0.05, _thread.interrupt_main, (signum,))
        timer.daemon = True
        timer.start()
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(exit, usage error, abort) exception classes: typer's, plus click's where click is installed. A recent typer
    vendors click and does not install it (a plain `pip install hmgnn` has none); an older one raises click's own."""
    exits, usage, aborts = [typer.Exit], [typer.TyperException], [typer.Abort]
    try:
        import click
    except ModuleNotFoundError:
        pass
    else:
        exits.append(click.exceptions.Exit)
        usage.append(click.ClickException)
        aborts.append(click.exceptions.Abort)
    return tuple(exits), tuple(usage), tuple(aborts)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: known errors become one line on stderr and exit code 1; usage errors exit 2, whether
    the parser or a step finds them (`UsageError`: options that do not fit together, a value out of range); Ctrl-C
    exits 130 and SIGTERM 143, both saying "interrupted" after the step has removed its temporary files."""
    import signal
    import threading

    from rich.markup import escape

    from hmgnn import artifacts

    exits, usage, aborts = _click_exceptions()

    def error(message: str) -> None:
        for line in message.splitlines() or [""]:  # several problems: one `error:` line each
            console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)

    debug = os.environ.get("HMGNN_DEBUG") or "--debug" in (argv if argv is not None else sys.argv[1:])
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # a background job's ignored Ctrl-C stays ignored
                previous[signum] = signal.signal(signum, _stop)
    artifacts.completed_outputs().clear()
    artifacts.forget_fingerprints()
    _WAITING.clear()
    if previous and argv is None:
        artifacts.quiet_threads()
    try:
        # typer returns (not raises) the code of an Exit: 130 after Ctrl-C, which it turns into Exit(130)
        args = list(sys.argv[1:] if argv is None else argv)
        # bare `hmgnn` is a request for help, not a usage error
        code = app(args=args or ["--help"], standalone_mode=False)
    except exits as exc:
        code = exc.exit_code
    except usage as exc:  # usage: unknown option, bad value, no argument
        # typer vendors click: its usage errors are TyperExceptions, not click's
        if callable(getattr(exc, "show", None)):
            exc.show()
        else:
            error(str(exc))
        code = getattr(exc, "exit_code", 0) or 2
    except aborts as exc:
        if isinstance(exc.__cause__ or exc.__context__, EOFError):  # typer's wrapping of an EOFError
            if debug:
                raise
            error("unexpected end of input (EOFError) (rerun with --debug for the traceback)")
        else:
            console.print("aborted")
        code = 1
    except Interrupted as exc:
        code = 128 + exc.signum
    except KeyboardInterrupt:
        code = 130
    except HmgnnError as exc:
        if debug:
            raise
        error(str(exc))
        code = 2 if isinstance(exc, UsageError) else 1  # options that do not fit, found after parsing
    except Exception as exc:  # an unexpected failure: still one line unless debugging
        if debug:
            raise
        if artifacts.is_disk_full(exc):  # a full disk, whichever library hit it
            filename = getattr(exc, "filename", None)
            error(str(artifacts.disk_full(Path(filename) if filename else None)))
        else:
            text = str(exc).strip().splitlines() or [""]  # one line, however long the library's message
            error(f"{type(exc).__name__}: {text[0]}{' ...' if len(text) > 1 else ''} (rerun with --debug for the "
                  "traceback)")
        code = 1
    finally:
        if argv is None and previous:  # the process ends here: a late signal must not turn a finished run into -2/-15
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
        else:  # called in process (tests, scripts): the caller's handlers come back
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        artifacts.release_all()  # a step that failed before writing still held its output folder
    if code in (130, 128 + signal.SIGTERM):
        console.print("interrupted")
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
