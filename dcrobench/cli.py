"""Command line: ``dcrobench list | run | compress | data | leaderboard``. Thin: the work is in the modules."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click

from .errors import DcrobenchError, one_line_text

LIST_KINDS = ("methods", "datasets", "models", "attacks", "protocols")


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _fail_os(exc: OSError) -> None:
    """A file that could not be written or read mid-run (disk full, a folder made read-only): one line. Files are
    written atomically, so nothing half-written is left, and what finished is kept for the re-run."""
    where = f" {exc.filename}" if exc.filename else ""
    _fail(DcrobenchError(f"cannot write or read{where} ({exc.strerror or exc}): finished records and stages are kept; "
                         "fix it and re-run the same command to resume"))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that every command stops the same way."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _interrupted(results_dir: Path | None, exc: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM: say what is kept and how to resume instead of a traceback, click's bare "Aborted!" or
    (SIGTERM) nothing at all."""
    signum = getattr(exc, "signum", signal.SIGINT)
    by = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    kept = f" (stage cache {results_dir / '_stages'})" if results_dir is not None else ""
    click.echo(f"interrupted{by}: finished records and stages are kept{kept}; re-run the same command to resume",
               err=True)
    sys.exit(128 + signum)


class OneLineClickError(click.ClickException):
    """Click's own errors (an unknown option, a missing one, a value of the wrong type) as one `error:` line, with
    Click's exit code (2 for usage errors)."""

    def __init__(self, error: click.ClickException) -> None:
        ctx = getattr(error, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        super().__init__(one_line_text(error.format_message()) + hint)
        self.exit_code = error.exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@contextlib.contextmanager
def _one_line_click_errors() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:  # a group without its subcommand: Click prints the help
        raise
    except OneLineClickError:
        raise
    except click.ClickException as exc:
        raise OneLineClickError(exc) from None
    except KeyboardInterrupt as exc:  # commands that do not handle it themselves
        _interrupted(None, exc)


class Cli(click.Group):
    """The command group: Click's errors and interruptions reported like every other error and interruption."""

    def make_context(self, *args, **kwargs):
        with _one_line_click_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_click_errors():
            return super().invoke(ctx)


def _warn_failures(regs) -> None:
    for failure in regs.failures:
        click.echo(f"warning: {failure}", err=True)


class _EchoHandler(logging.Handler):
    """Library warnings as ``warning: ...`` lines on the current stderr (looked up per message)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        click.echo(f"{prefix}{record.getMessage()}", err=True)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dcrobench")
def main() -> None:
    """Adversarial robustness of models trained on compressed datasets."""
    logger = logging.getLogger("dcrobench")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler(logging.WARNING))
        logger.propagate = False
    _sigterm_as_ctrl_c(click.get_current_context())


def _sigterm_as_ctrl_c(ctx: click.Context) -> None:
    """SIGTERM raises :class:`Terminated` until the command ends (then the previous handler is back)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals are not ours to handle
        return
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous))


LINE_WIDTH = 127  # `dcrobench list` lines stay within this
MIN_DESCRIPTION_WIDTH = 40
PROTOCOL_HASH_NOTE = textwrap.fill(
    "The hash above is the protocol file's. Each record carries its method's own hash instead: the protocol with "
    "only that method's parameters (other methods' blocks left out), so tuning one method never orphans another's "
    "records. `dcrobench run` prints both.", 100, initial_indent="\n")


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(LIST_KINDS))
def list_cmd(kind: str | None) -> None:
    """List registered methods, datasets, models, attacks and protocols."""
    from tabulate import tabulate

    from .protocol import builtin_protocols, load_protocol
    from .registry import registries

    def text(item, attr: str) -> str:  # one plugin's odd attribute never breaks the listing
        try:
            value = getattr(item, attr, "")
            return "" if value is None else " ".join(str(value).split())
        except Exception as exc:
            return f"<{attr} raised {type(exc).__name__}>"

    regs = registries()
    kinds = [kind] if kind else list(LIST_KINDS)
    for k in kinds:
        rows = []
        if k == "methods":
            rows = [[n, text(regs.methods.get(n), "kind"), regs.methods.source(n), regs.methods.origin(n).provider,
                     text(regs.methods.get(n), "description")] for n in regs.methods]
        elif k == "protocols":
            for n in builtin_protocols():
                try:
                    p = load_protocol(n)
                    rows.append([n, f"v{p.version}", p.hash, p.description])
                except Exception as exc:
                    rows.append([n, "?", "?", f"invalid: {exc}"])
        else:
            reg = getattr(regs, k)
            rows = [[n, reg.source(n), reg.origin(n).provider, text(reg.get(n), "description")] for n in reg]
        headers = {"methods": ["method", "kind", "plugin", "distribution", "description"],
                   "protocols": ["protocol", "version", "hash", "description"]}.get(k, [k[:-1], "plugin", "distribution", "description"])
        # long descriptions wrap into what the other columns leave of a LINE_WIDTH line
        others = sum(max(len(str(r[i])) for r in [headers, *rows]) + 2 for i in range(len(headers) - 1))
        widths = [None] * (len(headers) - 1) + [max(MIN_DESCRIPTION_WIDTH, LINE_WIDTH - others)]
        click.echo(f"\n{k}:\n" + tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=widths))
        if k == "protocols":
            click.echo(PROTOCOL_HASH_NOTE)
    if regs.failures:
        click.echo("\nbroken plugins and name conflicts (skipped):")
        for failure in regs.failures:
            click.echo(f"  {failure}")


def _common_setup(threads: int | str | None, device: str | None) -> None:
    """Refuse a bad --threads or --device before any work (the API applies them)."""
    from .device import resolve_device, resolve_threads

    resolve_threads(threads, resolve_device(device))


DATA_ROOT_OPTION = click.option(
    "--data-root", type=click.Path(file_okay=False, path_type=Path),
    help="where torchvision datasets live (default: $DCROBENCH_CACHE/data, else ~/.cache/dcrobench/data)")
THREADS_HELP = ("CPU threads (torch and numpy/scipy BLAS): a number, 'torch' (the libraries' defaults) or 'auto' (the cores not already busy; 1 on a 2-core machine, "
                "see benchmarks/perf/threads.md)")


def _log_to_stderr(quiet: bool) -> None:
    """Stage lines (INFO) and warnings of the ``dcrobench`` logger on stderr; ``--quiet`` keeps warnings only."""
    logger = logging.getLogger("dcrobench")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    for h in logger.handlers:
        if isinstance(h, _EchoHandler):
            h.setLevel(logging.WARNING if quiet else logging.INFO)


@main.command()
@click.option("--method", "-m", help="compression method (see `dcrobench list methods`)")
@click.option("--compressed", "compressed_file", type=click.Path(dir_okay=False, path_type=Path),
              help="a file written by `dcrobench compress`, instead of --method")
@click.option("--dataset", "-d", required=True, help="dataset (see `dcrobench list datasets`)")
@click.option("--budget", "-b", type=int, help="images per class (default: the protocol's)")
@click.option("--model", help="architecture (default: the protocol's)")
@click.option("--protocol", "-p", default="quick", show_default=True, help="protocol name or YAML file")
@click.option("--norm", "norms", multiple=True, type=click.Choice(["linf", "l2"]), help="threat model(s); default linf")
@click.option("--seeds", type=int, help="how many seeds: the protocol's first N, then the integers after its largest "
              "(default: all the protocol's)")
@DATA_ROOT_OPTION
@click.option("--download/--no-download", default=False, help="let torchvision download missing datasets")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(path_type=Path),
              help="folder of the JSON records")
@click.option("--save-models", type=click.Path(file_okay=False, path_type=Path),
              help="also export every trained model here (safetensors + JSON spec; dcrobench.load_model reads them)")
@click.option("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
@click.option("--threads", default="auto", show_default=True, help=THREADS_HELP)
@click.option("--progress/--no-progress", default=None, help="progress bars (default: when attached to a terminal)")
@click.option("--quiet", "-q", is_flag=True, help="no per-stage lines, only warnings, errors and the result table")
def run(method, compressed_file, dataset, budget, model, protocol, norms, seeds, data_root, download, results_dir,
        save_models, device, threads, progress, quiet) -> None:
    """Compress, train (standard and adversarial), attack and record one cell per norm and seed.

    One line per stage goes to stderr (what, which cell, computed or loaded from the stage cache, seconds).
    """
    from tabulate import tabulate

    from . import api
    from .protocol import load_protocol
    from .registry import registries

    _log_to_stderr(quiet)
    try:
        _common_setup(threads, device)
        proto = load_protocol(protocol)
        _warn_failures(registries())
        if not quiet:  # records carry the per-method hash: other methods' parameters are left out of it
            blocks = registries().methods.get(method).protocol_blocks if method else ()
            which = f"hash for {method}: {proto.hash_for(method, blocks)}, " if method else ""
            click.echo(f"protocol {proto.name} v{proto.version} ({which}file hash {proto.hash})", err=True)
        records = api.run(method, dataset, budget=budget, model=model, protocol=proto, norms=norms, seeds=seeds,
                          compressed=compressed_file, results=results_dir, device=device, threads=threads,
                          data_root=data_root, download=download, save_models=save_models, progress=progress)
    except DcrobenchError as exc:
        _fail(exc)
    except OSError as exc:  # disk full, read-only or unreadable mid-run
        _fail_os(exc)
    except KeyboardInterrupt as exc:
        _interrupted(results_dir, exc)
    rows = [[r.method.name, r.dataset, r.budget.ipc or "full", r.model, r.norm, r.seed,
             f"{100 * r.standard.clean_acc:.2f}", f"{100 * r.standard.robust_acc:.2f}",
             f"{100 * r.adversarial.clean_acc:.2f}", f"{100 * r.adversarial.robust_acc:.2f}",
             f"{r.cost['compress_s']:.1f}", f"{r.cost['train_s']:.1f}", f"{r.cost['eval_s']:.1f}"]
            for r in sorted(records, key=lambda r: (r.norm, r.seed))]
    click.echo(tabulate(rows, headers=["method", "dataset", "budget/class", "model", "norm", "seed", "std clean %",
                                       "std robust %", "adv clean %", "ROBUST SCORE %", "compress s", "train s", "eval s"],
                        tablefmt="github"))


@main.command()
@click.option("--method", "-m", required=True, help="compression method (see `dcrobench list methods`)")
@click.option("--dataset", "-d", required=True, help="dataset (see `dcrobench list datasets`)")
@click.option("--budget", "-b", type=int, help="images per class (default: the protocol's)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of seed-dependent methods")
@click.option("--protocol", "-p", default="quick", show_default=True, help="supplies the method's parameters")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="file to write (never overwritten)")
@DATA_ROOT_OPTION
@click.option("--download/--no-download", default=False, help="let torchvision download missing datasets")
@click.option("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
@click.option("--threads", default="auto", show_default=True, help=THREADS_HELP)
def compress(method, dataset, budget, seed, protocol, out, data_root, download, device, threads) -> None:
    """Write a compressed training set to a file: tensors and JSON metadata in a torch zip file, read back
    with ``torch.load(weights_only=True)`` (no pickled objects are accepted)."""
    from . import api
    from .registry import registries

    try:
        _common_setup(threads, device)
        _warn_failures(registries())
        comp = api.compress(method, dataset, budget=budget, seed=seed, protocol=protocol, out=out, device=device,
                            threads=threads, data_root=data_root, download=download)
        counts = comp.per_class_counts(int(comp.labels.max()) + 1)
    except DcrobenchError as exc:
        _fail(exc)
    except OSError as exc:  # disk full, read-only or unreadable mid-run
        _fail_os(exc)
    click.echo(f"wrote {len(comp)} images ({counts} per class) to {out}")


@main.command("import-set")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "fmt", required=True, type=click.Choice(["mtt", "dc", "tensors"]),
              help="mtt: images_best.pt + labels_best.pt; dc: a DC/DSA/DM result file; tensors: .pt/.npz/.npy tensors")
@click.option("--dataset", "-d", required=True, help="the dataset the set was distilled from")
@click.option("--name", required=True, help="the method label its records carry (e.g. mtt-official)")
@click.option("--normalized", help="undo this normalisation: MEAN,STD (means then stds, per channel) or a preset "
              "(mnist, cifar10, cifar100, svhn: the DC code bases' constants)")
@click.option("--experiment", type=int, default=0, show_default=True, help="dc: which experiment's set")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="file to write (never overwritten)")
@DATA_ROOT_OPTION
@click.option("--download/--no-download", default=False, help="let torchvision download missing datasets")
def import_set(files, fmt, dataset, name, normalized, experiment, out, data_root, download) -> None:
    """Import a set distilled by other code, validated, with its provenance; score it with
    `dcrobench run --compressed OUT`. Files are read without unpickling (torch weights_only / numpy)."""
    from . import api
    from .registry import registries

    try:
        _warn_failures(registries())
        comp = api.import_set(files, fmt=fmt, dataset=dataset, name=name, out=out, normalized=normalized,
                              experiment=experiment, data_root=data_root, download=download)
    except DcrobenchError as exc:
        _fail(exc)
    except OSError as exc:  # disk full, read-only or unreadable mid-run
        _fail_os(exc)
    counts = comp.provenance.per_class_counts
    click.echo(f"wrote {len(comp)} images ({counts} per class, {100 * comp.meta['clipped_fraction']:.2f}% of pixels "
               f"clipped to [0, 1]) to {out}")


@main.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="results folder (records and the stage cache)")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process or a process pool; ray: Ray tasks")
@click.option("--workers", type=int, default=1, show_default=True, help="parallel tasks (processes or Ray tasks)")
@click.option("--ray-address", help="connect to a running Ray cluster (default: start a local one)")
@click.option("--device", help="cpu, cuda, cuda:1, ... for every task (default: cuda when available)")
@click.option("--threads", default="auto", show_default=True, help=THREADS_HELP + ", per task")
@click.option("--progress/--no-progress", default=None, help="a progress bar over tasks (default: when attached to a "
              "terminal; one line per task otherwise)")
def sweep(grid_file, results_dir, executor, workers, ray_address, device, threads, progress) -> None:
    """Run every cell of a grid file; re-running resumes (finished records and stages are kept).

    A failing task is reported and the sweep goes on; it then exits 1, one `error:` line per failure.
    """
    from .grid import load_grid
    from .scheduler import run_sweep
    from .workers import SweepInterrupted

    from .device import resolve_threads

    try:
        _common_setup(threads, device)
        threads = resolve_threads(threads, device)
        grid = load_grid(grid_file)
        summary = run_sweep(grid, results_dir, executor=executor, workers=workers, device=device, threads=threads,
                            progress=progress, log=lambda m: click.echo(m, err=True), ray_address=ray_address)
    except KeyboardInterrupt as exc:
        _interrupted(results_dir, exc)
    except SweepInterrupted as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(128 + exc.signum)
    except DcrobenchError as exc:
        _fail(exc)
    except OSError as exc:  # disk full, read-only or unreadable mid-run
        _fail_os(exc)
    click.echo(f"grid {grid.name}: {summary['tasks']} tasks, {summary['already_done']} already done, {summary['ran']} run, "
               f"{summary['failed']} failed; stages computed {summary['computed']}, loaded {summary['loaded']}")
    if summary["failed"]:
        for failure in summary["failures"]:
            click.echo(f"error: {failure['cell']}: {failure['error']}", err=True)
        sys.exit(1)


@main.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--missing", is_flag=True, help="list only the cells still missing")
def status(grid_file, results_dir, missing) -> None:
    """What a grid has done and what is missing, and how long the missing cells should take at the costs the
    finished ones recorded."""
    from tabulate import tabulate

    from .grid import CostEstimate, grid_cells, load_grid

    try:
        cells = grid_cells(load_grid(grid_file), results_dir)
    except DcrobenchError as exc:
        _fail(exc)
    done = sum(c.done for c in cells)
    shown = [c for c in cells if not (missing and c.done)]
    click.echo(tabulate([[Path(c.task.protocol).stem, c.task.method, c.task.dataset,
                          "full" if c.task.budget is None else c.task.budget, c.model, c.norm, c.task.seed,
                          "done" if c.done else "missing"] for c in shown],
                        headers=["protocol", "method", "dataset", "budget/class", "model", "norm", "seed", "state"],
                        tablefmt="simple"))
    estimate = CostEstimate.of(cells)
    click.echo(f"\n{done} of {len(cells)} cells done, {len(cells) - done} missing"
               + (f", {estimate.phrase()}" if estimate.phrase() else ""))
    if estimate.without_basis_line():
        click.echo(estimate.without_basis_line())


@main.group()
def data() -> None:
    """Dataset files: which are in place, download them, or import copies without a network."""


@data.command("status")
@DATA_ROOT_OPTION
def data_status(data_root: Path | None) -> None:
    """One line per dataset: present (every file's md5 verified), missing, damaged (which file) or embedded."""
    from .datafiles import dataset_state
    from .datasets import resolve_data_root
    from .registry import registries

    regs = registries()
    _warn_failures(regs)
    root = resolve_data_root(data_root)
    click.echo(f"data root: {root}")
    width = max(map(len, regs.datasets), default=0)
    incomplete = False
    for name in regs.datasets:
        try:
            state = dataset_state(regs.datasets.get(name), root)
        except DcrobenchError as exc:  # one plugin's broken declaration never hides the other datasets
            click.echo(f"{name:<{width}}  unknown   {exc}")
            continue
        click.echo(state.row(width))
        incomplete |= state.state in ("missing", "damaged")
    if incomplete:
        click.echo("\nget files with `dcrobench data fetch NAME` (needs a network) or, without one, "
                   "`dcrobench data import NAME FILE...` (README: Data without a network)")


@data.command("fetch")
@click.argument("name")
@DATA_ROOT_OPTION
def data_fetch(name: str, data_root: Path | None) -> None:
    """Download dataset NAME with torchvision (needs a network), then verify its files."""
    from .datafiles import fetch
    from .datasets import resolve_data_root
    from .registry import registries

    try:
        regs = registries()
        _warn_failures(regs)
        spec = regs.datasets.get(name)
        with contextlib.redirect_stdout(sys.stderr):  # torchvision's download messages are progress, not output
            state = fetch(spec, resolve_data_root(data_root))
    except DcrobenchError as exc:
        _fail(exc)
    click.echo(state.summary())


@data.command("import")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@DATA_ROOT_OPTION
def data_import(name: str, files: tuple[Path, ...], data_root: Path | None) -> None:
    """Install copies of dataset NAME's files brought without a network (raw, .gz, or the official archive).

    Each file is recognised by the md5 of its content (.gz/.bz2/.xz decompressed; never the .gz's own md5) and installed
    where the loader reads it, under the name the loader expects. All are checked before anything is written;
    one bad file refuses the import and changes nothing. An existing different file is never replaced.
    """
    from .datafiles import dataset_state, import_files
    from .datasets import resolve_data_root
    from .registry import registries

    try:
        regs = registries()
        _warn_failures(regs)
        spec = regs.datasets.get(name)
        root = resolve_data_root(data_root)
        matches = import_files(spec, root, files)
        state = dataset_state(spec, root)
    except DcrobenchError as exc:
        _fail(exc)
    for match in matches:
        click.echo(match.line())
    click.echo(f"{state.summary()} (data root {root})")


@main.group()
def leaderboard() -> None:
    """Leaderboard tables from result records."""


FORCE_HINT = "--force to write anyway"


def _file_head(path: Path, size: int = 16384) -> str:
    """The first ``size`` bytes of a file as text ('' when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def _written_by_render(path: Path) -> bool:
    from .leaderboard import RENDER_MARK, TITLE, render_markdown

    head = _file_head(path)
    return head.startswith(TITLE + "\n") and (RENDER_MARK in head or head == render_markdown([]))


def _published_folder(out_dir: Path) -> bool:
    """Whether ``out_dir`` is empty or holds what publish writes (its index says so)."""
    from .leaderboard import INDEX_FILE, PUBLISH_MARK

    try:
        empty = not any(out_dir.iterdir())
    except OSError:  # missing (publish creates it), or unreadable: the write will say so
        return True
    return empty or _file_head(out_dir / INDEX_FILE).startswith(PUBLISH_MARK)


@leaderboard.command("render")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write markdown here (default: stdout); "
              "an existing file only when render wrote it")
@click.option("--force", is_flag=True, help="replace --out even when it is not a file render wrote")
def leaderboard_render(results_dir: Path, out: Path | None, force: bool) -> None:
    """Markdown tables: one per (protocol version, dataset, norm), mean ± std over seeds."""
    from .fileio import atomic_write_text
    from .leaderboard import render_markdown
    from .validation import check_results

    if out and out.exists() and not force and not _written_by_render(out):
        _fail(DcrobenchError(f"{out} exists and is not a file `leaderboard render` wrote; refusing to overwrite it "
                             f"({FORCE_HINT})"))
    if not results_dir.is_dir():
        click.echo(f"warning: results folder {results_dir} does not exist", err=True)
    checked = check_results(results_dir)
    for line in checked.invalid_lines():
        click.echo(f"warning: {line} (skipped)", err=True)
    for line in checked.duplicate_lines():
        click.echo(f"warning: {line} (counted once)", err=True)
    for line in checked.conflicts:
        click.echo(f"warning: {line} (one row per hash)", err=True)
    text = render_markdown(checked.records)
    if out:
        try:
            atomic_write_text(out, text)
        except OSError as exc:
            _fail(DcrobenchError(f"cannot write {out} ({exc.strerror or exc})"))
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text)


def _publish_command(results_dir: Path, out_dir: Path) -> str:
    """The command a published index names: as run from the out folder, whatever folder publish ran from."""
    from .leaderboard import publish_command

    return publish_command(results_dir, out_dir)


def _checked_results(results_dir: Path, code: int):
    """The checked records of ``results_dir``; a missing folder is one `error:` line and exit ``code``."""
    from .validation import check_results

    if not results_dir.is_dir():
        click.echo(f"error: results folder {results_dir} does not exist", err=True)
        sys.exit(code)
    return check_results(results_dir)


@leaderboard.command("publish")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", default="leaderboard", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--plots/--no-plots", default=True)
@click.option("--force", is_flag=True, help="write into --out even when it is a non-empty folder publish did not make")
def leaderboard_publish(results_dir: Path, out_dir: Path, plots: bool, force: bool) -> None:
    """Paper-style tables (per protocol version, older versions archived), budget curves and PNG plots.

    Writes into an empty or new folder, or one it published before; any other folder only with --force."""
    from .leaderboard import INDEX_FILE, publish

    if not force and not _published_folder(out_dir):
        _fail(DcrobenchError(f"refusing to publish into {out_dir}: it is not empty and holds no {INDEX_FILE} written "
                             f"by `leaderboard publish` ({FORCE_HINT})"))
    checked = _checked_results(results_dir, 2)
    for line in checked.duplicate_lines():
        click.echo(f"warning: {line} (counted once)", err=True)
    refused = checked.invalid_lines() + checked.conflicts
    for line in refused:
        click.echo(f"error: {line} (nothing published)", err=True)
    if refused:
        sys.exit(2)
    if not checked.records:
        _fail(DcrobenchError(f"no records under {results_dir}: nothing to publish"))
    try:
        written = publish(checked.records, out_dir, _publish_command(results_dir, out_dir), plots=plots)
    except OSError as exc:
        _fail(DcrobenchError(f"cannot write the leaderboard to {out_dir} ({exc.strerror or exc})"))
    click.echo("\n".join(f"wrote {w}" for w in written))


@leaderboard.command("check")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", default="leaderboard", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--protocol", "protocol_files", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="a protocol file records were made under (repeatable); records of a built-in protocol's current "
                   "version need none")
@click.option("--recompute", type=click.IntRange(min=0), default=0, show_default=True,
              help="also re-run this many sampled cells with the current code (empty caches) and fail on any number "
                   "that moved")
@click.option("--recompute-seed", type=int, default=0, show_default=True, help="which cells --recompute samples")
@click.option("--cheapest", is_flag=True, help="--recompute takes the cheapest cells (by recorded cost) instead")
@DATA_ROOT_OPTION
def leaderboard_check(results_dir: Path, out_dir: Path, protocol_files: tuple[Path, ...], recompute: int,
                      recompute_seed: int, cheapest: bool, data_root: Path | None) -> None:
    """Fail on invalid or duplicate records, on one cell claimed under different protocol hashes, on a record that
    disagrees with what can be re-derived of it (its ε from its protocol and dataset, its budget from its set's
    per-class counts, its cell from its path, a robustness curve above the clean accuracy), on a stale index or a
    missing or stale plot. Independent of the folder it runs from."""
    from .leaderboard import check_published
    from .protocol import load_protocol
    from .recordcheck import rederive

    try:
        protocols = [load_protocol(str(path)) for path in protocol_files]
    except DcrobenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    checked = _checked_results(results_dir, 1)
    problems = checked.problems()
    derived = rederive(checked.records, results_dir, protocols, skip_path={first for _, first in checked.duplicates})
    problems += derived.problems
    if not (checked.invalid or checked.conflicts):  # what publish would write can only be checked when it can run
        problems += check_published(checked.records, results_dir, out_dir)
    if recompute and not problems:  # re-running is only worth it for a folder that passes everything else
        from .recompute import recompute as recompute_cells

        try:
            again = recompute_cells(checked.records, recompute, seed=recompute_seed, cheapest=cheapest,
                                    data_root=data_root, protocol_files=protocols,
                                    log=lambda line: click.echo(line, err=True))
        except DcrobenchError as exc:
            _fail(exc)
        problems += again.problems
        derived.notes += again.notes
    for line in derived.notes:
        click.echo(f"note: {line}")
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"leaderboard ok: {len(checked.records)} valid records, {out_dir} up to date")


if __name__ == "__main__":
    main()
