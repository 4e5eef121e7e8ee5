"""The ``emolingua`` command line: one group per concept.

    emolingua corpora scan ../shared/corpora --output manifest.parquet
    emolingua splits make manifest.parquet --protocol loso --output splits.parquet

A user's mistake (any :class:`emolingua.errors.EmolinguaError`, an OSError on a path the user
gave) is printed as one line, ``error: <what>: <why and what to do>``, on stderr, with exit
status 2; ``--debug`` (or ``EMOLINGUA_DEBUG=1``) shows the traceback instead. Output to a file
or a pipe is never wrapped; other libraries' progress bars and warnings are hidden unless
``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from emolingua import __version__
from emolingua.config import parse_override
from emolingua.errors import ConfigError, EmolinguaError, InputFileError

_debug = {"on": False}


def _debugging() -> bool:
    return _debug["on"] or os.environ.get("EMOLINGUA_DEBUG", "") not in ("", "0")


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for a user's mistake, or None for a programming error."""
    if isinstance(exc, EmolinguaError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        message = f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions"
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}"
    else:
        import yaml

        if not isinstance(exc, yaml.YAMLError):
            return None
        message = f"config: not valid YAML ({exc})"
    return " ".join(message.split())


def _print_error(message: str) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)


class _Group(TyperGroup):
    """The top-level group: every command runs inside the one handler of users' mistakes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = _user_error(exc)
            if message is None or _debugging():
                raise
            _print_error(message)
            raise typer.Exit(2) from None


app = typer.Typer(help="Speech emotion recognition in many languages.", no_args_is_help=True, add_completion=False,
                  cls=_Group)  # fmt: skip
corpora_app = typer.Typer(help="Find corpora, list their utterances, show the emotion taxonomy.", no_args_is_help=True)
splits_app = typer.Typer(help="Make train / valid / test splits under honest protocols.", no_args_is_help=True)
features_app = typer.Typer(help="Extract features into a crash-safe store; list what a store holds.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure speed: audio-seconds per wall-second and peak memory.", no_args_is_help=True)
models_app = typer.Typer(help="List the models, with their options and defaults.", no_args_is_help=True)
app.add_typer(corpora_app, name="corpora")
app.add_typer(splits_app, name="splits")
app.add_typer(features_app, name="features")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")


def _console(*, stderr: bool) -> Console:
    """Never wrapped: a terminal wraps long lines itself; a file or pipe gets them whole."""
    console = Console(stderr=stderr, soft_wrap=True)
    return console if console.is_terminal else Console(stderr=stderr, soft_wrap=True, width=100_000)


console = _console(stderr=False)
err_console = _console(stderr=True)


def _quiet_libraries(debug: bool) -> None:
    """Only emolingua's own progress and notes: no hub progress bars, transformers' advice or
    other libraries' warnings (all shown with --debug)."""
    if debug:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # extraction worker processes report through emolingua
    if "transformers" in sys.modules:  # the variables above are read at import
        sys.modules["transformers"].logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"emolingua(\.|$)")
    warnings.showwarning = _show_note


def _show_note(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
               line: str | None = None) -> None:  # fmt: skip
    err_console.print(f"[yellow]note:[/] {escape(str(message))}", highlight=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emolingua {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and other libraries' warnings (also EMOLINGUA_DEBUG=1).")
    ] = False,
) -> None:
    """emolingua: speech emotion recognition for low-resource languages."""
    _debug["on"] = debug
    _quiet_libraries(_debugging())


# ----------------------------------------------------------------------------- corpora
@corpora_app.command("list")
def corpora_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the supported corpora with language and classes."""
    from emolingua.corpora import readers

    rows = [cls().describe() for cls in readers().values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("corpus", "language", "classes", title="Supported corpora")
    for r in rows:
        table.add_row(str(r["name"]), f"{r['language']} ({r['language_name']})", ", ".join(r["classes"]) or "-")  # type: ignore[arg-type]
    console.print(table)


@corpora_app.command("scan")
def corpora_scan(
    root: Annotated[Path, typer.Argument(help="Folder to search for corpora (at it or below it).")],
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", "-c", help="Only this corpus (repeatable).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Manifest: .parquet, .csv or .jsonl.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-corpus summary as JSON.")] = False,
    ratings: Annotated[
        Optional[Path], typer.Option(help="CSV/Parquet with path, arousal, valence (0..1) overriding the priors.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Threads reading audio headers.")] = 8,
) -> None:
    """Find every supported corpus at ROOT or below it and write one manifest."""
    from emolingua.corpora import check_manifest_output, scan_corpora, write_manifest

    if not root.is_dir():
        raise InputFileError(f"{root}: not a folder; give the folder that holds the corpora")
    if output is not None:
        check_manifest_output(output)  # before the scan, not after it
    result = scan_corpora(root=root, corpora=corpus, ratings=ratings, workers=workers)
    if output is not None and result.corpora:
        write_manifest(result.manifest, output)
    if as_json:
        typer.echo(result.to_json())
    else:
        table = Table()
        table.add_column("corpus", no_wrap=True, min_width=max([6] + [len(c.name) for c in result.corpora]))
        for col in ("lang", "files", "spk", "min", "cls", "per cls", "err"):
            table.add_column(col)
        for c in result.corpora:
            counts = list(c.labels.values())
            per_class = f"{min(counts)}-{max(counts)}" if counts else "-"
            table.add_row(c.name, c.language, str(c.files), str(c.speakers), f"{c.minutes:.1f}", str(len(counts)),
                          per_class, str(len(c.errors)))  # fmt: skip
        if result.corpora:
            console.print(table)
        for c in result.corpora:
            for e in c.errors:
                err_console.print(f"[yellow]skipped[/] {e.path}: {e.reason}", soft_wrap=True, highlight=False)
        if result.duplicates:
            counts = ", ".join(f"{name} {n}" for name, n in result.duplicate_counts().items())
            console.print(f"byte-identical files: {len(result.duplicates)} group(s) ({counts}); "
                          "kept on one side of every split; `--json` lists them", soft_wrap=True, highlight=False)  # fmt: skip
        if output is not None and result.corpora:
            console.print(f"manifest: {output} ({len(result.manifest)} utterances)")
    if not result.corpora:
        err_console.print(f"[red]no supported corpus found in {root}[/]")
        raise typer.Exit(2)


@corpora_app.command("taxonomy")
def corpora_taxonomy(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the canonical labels with their activation / valence priors and sources."""
    from emolingua.taxonomy import taxonomy_table

    df = taxonomy_table()
    if as_json:
        typer.echo(df.to_json(orient="records", indent=2))
        return
    table = Table(*df.columns, title="Canonical emotion labels (0..1 scale)")
    for rec in df.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in rec])
    console.print(table)


# ------------------------------------------------------------------------------ splits
@splits_app.command("make")
def splits_make(
    manifest: Annotated[Path, typer.Argument(help="Manifest written by `corpora scan`.")],
    protocol: Annotated[str, typer.Option(help="loso | speaker-kfold:K | random:70/10/20 | emobox:DIR")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Split file: .parquet, .csv or .jsonl.")],
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: the protocol's own).")] = None,
    stratify_on: Annotated[str, typer.Option(help="Column to stratify classes on.")] = "label",
) -> None:
    """Write every utterance's role (train / valid / test) in every fold."""
    from emolingua.corpora import read_manifest
    from emolingua.protocols import describe_splits, make_splits, write_splits

    try:
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always")
            df = make_splits(read_manifest(manifest), protocol=protocol, seed=seed, stratify_on=stratify_on)
        for note in notes:
            err_console.print(f"[yellow]note:[/] {note.message}")
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    write_splits(df, output)
    summary = describe_splits(df)
    table = Table(title=f"{protocol} -> {output}")
    table.add_column("corpus", no_wrap=True)
    for col in ("fold", "train", "valid", "test", "speakers tr/va/te", "SI"):
        table.add_column(col)
    for r in summary.to_dict("records"):
        speakers = f"{r['speakers_train']}/{r['speakers_valid']}/{r['speakers_test']}"
        table.add_row(str(r["corpus"]), str(r["fold"]), str(r["n_train"]), str(r["n_valid"]), str(r["n_test"]),
                      speakers, "SI" if r["speaker_independent"] else "SD")  # fmt: skip
    console.print(table)


# ---------------------------------------------------------------------------- features
def _at_least(low: float, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < low:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be at least {low}")


def _parse_options(pairs: list[str] | None) -> dict[str, object]:
    """``key=value`` pairs read as ``-s`` reads them (YAML scalars and lists: ``3e-4``, ``[1, 2]``, ``fp32``);
    a dotted key (``train.lr=3e-4``) sets a nested option."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, value = parse_override(pair)
        *parents, last = key.split(".")
        node = options
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
            if not isinstance(node, dict):
                raise ConfigError(f"option {pair!r}: {part} was given a value and nested options both")
        node[last] = value
    return options


OptionArg = Annotated[
    Optional[list[str]],
    typer.Option("--option", "-O", help="Extractor option key=value (repeatable), e.g. -O input=padded -O precision=fp32."),
]


@features_app.command("extract")
def features_extract(
    manifest: Annotated[Path, typer.Argument(help="Manifest written by `corpora scan`.")],
    extractor: Annotated[str, typer.Option("--extractor", "-e", help="Extractor name (see `features list`).")] = "whisper-base",
    store: Annotated[Optional[Path], typer.Option(help="Feature store folder (default: $EMOLINGUA_CACHE/features).")] = None,
    option: OptionArg = None,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per worker.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own model copy.")] = 1,
    batch_seconds: Annotated[float, typer.Option(help="Audio seconds per stored batch.")] = 120.0,
    executor: Annotated[str, typer.Option(help="local (this machine's processes) or ray (each batch a Ray task; "
                                                "pip install 'emolingua[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster HOST:PORT for --executor ray (default: "
                                                            "$RAY_ADDRESS, else a Ray instance on this machine).")] = None,
) -> None:
    """Fill the store with features of every file in MANIFEST; a rerun resumes."""
    from emolingua.corpora import read_manifest
    from emolingua.executors import check_executor
    from emolingua.features import get_extractor
    from emolingua.features.extract import default_store_dir, extract_to_store
    from emolingua.features.store import FeatureStore
    from emolingua.fileio import check_writable

    _at_least(1, workers=workers, threads=threads, batch_seconds=batch_seconds)
    check_executor(executor=executor, ray_address=ray_address)
    options = _parse_options(option)
    if threads is not None:
        options["threads"] = threads
    df = read_manifest(manifest)  # every mistake is found before the first batch is computed
    feature_store = FeatureStore(root=check_writable(store or default_store_dir(), what="feature store"))
    ex = get_extractor(extractor, **options)
    if ex.licence_note:
        err_console.print(f"[yellow]licence:[/] {ex.licence_note}")
    summary = extract_to_store(paths=df["path"].tolist(), extractor=ex, store=feature_store,
                               durations=df["duration"].tolist() if "duration" in df else None,
                               batch_seconds=batch_seconds, workers=workers, executor=executor,
                               ray_address=ray_address)  # fmt: skip
    for path, reason in summary.failures:
        err_console.print(f"[yellow]failed[/] {path}: {reason}")
    console.print(
        f"{ex.spec}: done {summary.done}, skipped {summary.skipped}, failed {summary.failed}, "
        f"{summary.seconds:.1f} s for {summary.audio_seconds:.0f} s of audio "
        f"({summary.realtime_factor:.0f}x real time), disk {summary.disk_bytes / 1e6:.1f} MB "
        f"in {feature_store.folder(ex)}"
    )


@features_app.command("list")
def features_list(
    store: Annotated[Optional[Path], typer.Option(help="Feature store folder (default: $EMOLINGUA_CACHE/features).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check every shard's checksum (reads the whole store).")] = False,
) -> None:
    """Show the extractors, and what the store holds (from each shard's key index; --verify reads every shard)."""
    from emolingua.features import extractor_names
    from emolingua.features.extract import default_store_dir
    from emolingua.features.store import FeatureStore

    console.print("extractors: " + ", ".join(extractor_names()))
    feature_store = FeatureStore(root=store or default_store_dir())
    if feature_store.root.exists() and not feature_store.root.is_dir():
        raise InputFileError(f"store {feature_store.root}: is a file, not a feature store folder")
    infos = feature_store.info(verify=verify)  # reports damage in .problems instead of raising
    if not infos:
        console.print(f"store {feature_store.root}: empty")
        return
    table = Table(title=f"store {feature_store.root}")
    for col in ("fingerprint", "extractor", "options", "entries", "failed", "MB"):
        table.add_column(col)
    for i in infos:
        opts = ", ".join(f"{k}={v}" for k, v in i.options.items())
        table.add_row(i.fingerprint, i.extractor, opts, str(i.entries), str(i.failures), f"{i.bytes / 1e6:.1f}")
    console.print(table)
    for i in infos:
        for problem in i.problems:
            err_console.print(f"[yellow]damaged:[/] {i.fingerprint}: {escape(problem)}", highlight=False)


# ------------------------------------------------------------------------------ models
@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print every registered model (plugins included) with its options and their defaults."""
    from emolingua.models import _REGISTRY

    rows = [cls.describe() for _, cls in _REGISTRY.items()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("model", "task", "options (default)", title="Models (give options as --model-option key=value)")
    for r in rows:
        # defaults shown as JSON: the way --model-option reads a value
        opts = "\n".join(f"{o['name']}={escape(json.dumps(o['default']))}  [dim]{escape(o['type'])}[/]" for o in r["options"])
        table.add_row(f"{r['name']}\n[dim]{escape(r['summary'])}[/]", r["task"], opts, end_section=True)
    console.print(table)


# ------------------------------------------------------------------------------- bench
@bench_app.command("features")
def bench_features_cmd(
    manifest: Annotated[Optional[Path], typer.Option(help="Time on these files (default: generated audio).")] = None,
    extractor: Annotated[
        Optional[list[str]],
        typer.Option("--extractor", "-e", help="Extractor, or name[key=value,...] (repeatable). Default: whisper-base "
                                               "at precision fp32, int8 and bf16 side by side."),
    ] = None,
    option: OptionArg = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many files (random sample, seed 0).")] = None,
    reference_limit: Annotated[int, typer.Option(help="Files for the slow reference (sample of the same manifest; "
                                                      "0: no reference).")] = 100,
    generated: Annotated[int, typer.Option(help="Generated clips when no manifest is given.")] = 40,
    threads: Annotated[int, typer.Option(help="Torch threads.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Time extractors side by side with the transformers reference, in one run, on the same files."""
    from emolingua.corpora import read_manifest
    from emolingua.features.bench import DEFAULT_EXTRACTORS, bench_features, rows_to_dicts

    paths = ref_paths = durations = None
    if manifest is not None:
        df = read_manifest(manifest)
        if limit is not None and limit < len(df):
            df = df.sample(limit, random_state=0)
        paths = df["path"].tolist()
        durations = df["duration"].astype(float).tolist() if "duration" in df else None
        ref_paths = df.sample(min(reference_limit, len(df)), random_state=0)["path"].tolist()
    options = _parse_options(option)
    specs = []
    for item in extractor or [f"{name}[precision={o['precision']}]" for name, o in DEFAULT_EXTRACTORS]:
        name, _, extra = item.partition("[")  # name, or name[key=value,key=value]
        specs.append((name, {**options, **_parse_options([kv for kv in extra.rstrip("]").split(",") if kv])}))
    rows = bench_features(extractors=specs, paths=paths, durations=durations, reference_paths=ref_paths,
                          generated=generated, threads=threads, reference=reference_limit > 0)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows_to_dicts(rows), indent=2))
        return
    table = Table(title="feature extraction speed (decoding not timed; same files, one process each, in turn)")
    table.add_column("extractor", no_wrap=True)
    for col in ("options", "clips", "audio s", "wall s", "x RT", f"vs {rows[0].options}", "load s", "peak MB"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.extractor, r.options, str(r.clips), f"{r.audio_seconds:.0f}", f"{r.wall_seconds:.1f}",
                      f"{r.realtime:.1f}", f"{r.realtime / rows[0].realtime:.2f}", f"{r.load_seconds:.1f}",
                      f"{r.peak_rss_mb:.0f}")  # fmt: skip
    console.print(table)


# --------------------------------------------------------------------------- benchmark
@app.command("benchmark")
def benchmark_cmd(
    corpora: Annotated[Optional[str], typer.Option(help="Folder to scan, or a manifest file.")] = None,
    output: Annotated[Optional[str], typer.Option(help="Folder for results.json, report.md and figures.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/TOML/JSON config; options given here override it.")] = None,
    features: Annotated[Optional[str], typer.Option(help="Extractor, or several joined by commas (default whisper-base).")] = None,
    feature_option: Annotated[Optional[list[str]], typer.Option("--feature-option", help="Extractor option key=value.")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="loso | speaker-kfold:K | random:70/10/20 | emobox:DIR | "
                                                        "leave-one-corpus-out | leave-one-language-out | few-shot[:K,..]")] = None,
    model: Annotated[Optional[str], typer.Option(help="A registered model (`emolingua models list`), e.g. logreg, mlp, multigate.")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", help="Model option key=value.")] = None,
    target: Annotated[Optional[str], typer.Option(help="label | intensity | arousal | valence")] = None,
    layers: Annotated[Optional[str], typer.Option(help="select (on valid) | all | a layer index")] = None,
    normalise: Annotated[Optional[str], typer.Option(help="auto | train | corpus | adapt-corpus | adapt-speaker | none")] = None,
    joint: Annotated[Optional[bool], typer.Option("--joint", help="One model for all corpora per fold.")] = None,
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Only these corpora (repeatable).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of splits and models.")] = None,
    store: Annotated[Optional[str], typer.Option(help="Feature store folder.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel fold jobs and extraction processes (default 1).")] = None,
    threads: Annotated[
        Optional[int], typer.Option(help="BLAS/torch threads per worker (default: the cores divided by --workers).")
    ] = None,
    executor: Annotated[Optional[str], typer.Option(help="local (default) or ray: extraction batches and fold jobs "
                                                          "as Ray tasks (pip install 'emolingua[ray]').")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster HOST:PORT for --executor ray (default: "
                                                            "$RAY_ADDRESS, else a Ray instance on this machine).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="Any config field by its dotted name, KEY=VALUE (repeatable; applied last), "
                            "e.g. -s protocol=loso -s model_options.C=[0.1] -s seed=3.")] = None,
) -> None:
    """Scan, extract (cached), train and score on every corpus; write a report to OUTPUT."""
    from emolingua.benchmark import BenchmarkConfig, run_benchmark

    overrides = {"corpora": corpora, "output": output, "features": features, "protocol": protocol, "model": model,
                 "target": target, "layers": layers, "normalise": normalise, "seed": seed, "store": store,
                 "workers": workers, "threads": threads, "joint": joint, "only_corpora": tuple(corpus) if corpus else None,
                 "feature_options": _parse_options(feature_option) if feature_option else None,
                 "model_options": _parse_options(model_option) if model_option else None,
                 "executor": executor, "ray_address": ray_address}  # fmt: skip
    if config is None and not set_ and (corpora is None or output is None):
        raise ConfigError("benchmark: --corpora and --output are needed (or --config FILE)")
    cfg = BenchmarkConfig.from_file(config, overrides=set_ or (), **overrides)
    results = run_benchmark(cfg)  # validates the whole configuration before any work
    for note in results["notes"]:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    jobs = results["jobs"]
    err_console.print(f"jobs: {jobs['reused']} reused, {jobs['computed']} computed (of {jobs['total']})")
    # The report is Markdown for files and pipes: written as is, never wrapped or read as markup.
    typer.echo((Path(results["config"]["output"]) / "report.md").read_text(), nl=False)


# --------------------------------------------------------------------------- transfer
@app.command("transfer")
def transfer_cmd(
    corpora: Annotated[Optional[str], typer.Option(help="Folder to scan, or a manifest file.")] = None,
    output: Annotated[Optional[str], typer.Option(help="Folder for measures.csv, report.md and figures.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/TOML/JSON config; options given here override it.")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="An embedding model (repeatable; default: "
                                                       "dae, dae-metric-act, dae-metric-val, vae, vae-annealed, vae-ss).")] = None,
    features: Annotated[Optional[str], typer.Option(help="The models' input stream (default egemaps).")] = None,
    source: Annotated[Optional[str], typer.Option(help="The corpus the models are trained on (default ravdess).")] = None,
    target: Annotated[Optional[list[str]], typer.Option("--target", help="A target corpus (repeatable; default: all others).")] = None,
    store: Annotated[Optional[str], typer.Option(help="Feature store folder.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Any config field, KEY=VALUE (repeatable).")] = None,
) -> None:
    """Train embedding models on one corpus and measure how they transfer to the others (Das et al. 2022)."""
    from emolingua.transfer import TransferConfig, run_transfer

    overrides = {"corpora": corpora, "output": output, "features": features, "source": source, "store": store,
                 "models": tuple(model) if model else None, "targets": tuple(target) if target else None}  # fmt: skip
    if config is None and not set_ and (corpora is None or output is None):
        raise ConfigError("transfer: --corpora and --output are needed (or --config FILE)")
    cfg = TransferConfig.from_file(config, overrides=set_ or (), **overrides)
    run_transfer(cfg)
    typer.echo((Path(cfg.output) / "report.md").read_text(), nl=False)


# ------------------------------------------------------------------------------ export
export_app = typer.Typer(help="Export a pipeline for other runtimes (ONNX).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="The folder to write (model.onnx, pipeline.json, ...).")],
    model: Annotated[str, typer.Option(help="default (shipped), a pipeline folder, or hf:<repo id>.")] = "default",
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default 17).")] = None,
) -> None:
    """One ONNX graph from the log-mel to the scores; predict with it by `--backend onnx`."""
    from emolingua.export import export_onnx

    folder = export_onnx(model=model, output=output, opset=opset)
    err_console.print(f"wrote {folder / 'model.onnx'}; use it with: emolingua predict FILES --model {folder} "
                      "--backend onnx", highlight=False)  # fmt: skip
    typer.echo(str(folder))


# --------------------------------------------------------------------------- train / predict
@app.command("train")
def train_cmd(
    corpora: Annotated[Optional[str], typer.Option(help="Folder to scan, or a manifest file.")] = None,
    output: Annotated[Optional[str], typer.Option(help="The pipeline folder to write.")] = None,
    model: Annotated[Optional[str], typer.Option(help="The emotion head: a registered classifier (default logreg).")] = None,
    features: Annotated[Optional[str], typer.Option(help="Extractor(s), joined by commas (default whisper-base).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/TOML/JSON config; options given here override it.")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", help="Model option key=value.")] = None,
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Only these corpora (repeatable).")] = None,
    store: Annotated[Optional[str], typer.Option(help="Feature store folder.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Extraction processes (default 1).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Any config field, KEY=VALUE (repeatable).")] = None,
) -> None:
    """Train a pipeline on all the data (valid speakers carved out in each corpus) and write its folder."""
    from emolingua.train import TrainConfig, train_pipeline

    overrides = {"corpora": corpora, "output": output, "model": model, "features": features, "store": store,
                 "workers": workers, "only_corpora": tuple(corpus) if corpus else None,
                 "model_options": _parse_options(model_option) if model_option else None}  # fmt: skip
    if config is None and not set_ and (corpora is None or output is None):
        raise ConfigError("train: --corpora and --output are needed (or --config FILE)")
    cfg = TrainConfig.from_file(config, overrides=set_ or (), **overrides)
    folder = train_pipeline(cfg)
    spec = json.loads((folder / "pipeline.json").read_text())
    for head, info in spec["heads"].items():
        score = info["valid_score"]
        shown = "n/a" if score is None else f"{100 * score:.1f} %" if info["valid_metric"] == "UA" else f"{score:.3f}"
        err_console.print(f"{head}: {info['model']} on {info['train_rows']} rows, valid {info['valid_metric']} "
                          f"{shown} (SI, {info['valid_rows']} rows), chose {info['selected']}", highlight=False)  # fmt: skip
    typer.echo(str(folder))


def _fmt(value: Any, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else f"{value:.{digits}f}"


@app.command("predict")
def predict_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, globs, or - for a list of paths on stdin.")],
    model: Annotated[str, typer.Option(help="default (shipped), a pipeline folder, or hf:<repo id>.")] = "default",
    language: Annotated[str, typer.Option(help="ISO code of the speech, for models with per-language parts.")] = "",
    segments: Annotated[Optional[str], typer.Option(help="vad | window | none (default: the pipeline's, vad).")] = None,
    window: Annotated[Optional[float], typer.Option(help="Window length in seconds (--segments window).")] = None,
    hop: Annotated[Optional[float], typer.Option(help="Hop between windows in seconds (default: the window).")] = None,
    max_segment: Annotated[Optional[float], typer.Option(help="Longest VAD segment in seconds (default 10).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="FILE.csv | .jsonl | .parquet: one row per segment and per file.")] = None,
    backend: Annotated[str, typer.Option(help="torch | onnx (after `emolingua export onnx`).")] = "torch",
    threads: Annotated[Optional[int], typer.Option(help="Torch/BLAS threads (default: all cores).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="Whisper's matrix products in the torch backend: bf16 | "
                                                          "fp32 | int8 (default: as the model was trained).")] = None,
) -> None:
    """Emotion, arousal and valence of each segment of each recording, and of each whole file."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from emolingua.audio import AudioError, probe_audio
    from emolingua.pipelines import Pipeline, resolve_model
    from emolingua.predict import FORMATS, expand_inputs, predict_to_file

    if output is not None and output.suffix not in FORMATS:
        raise InputFileError(f"{output}: unknown output format; use {', '.join(FORMATS)}")
    files = expand_inputs(paths)
    if not files:
        raise InputFileError(f"{' '.join(paths)}: no audio files found")
    ser = Pipeline(resolve_model(model), backend=backend, threads=threads, language=language, precision=precision)
    results = []
    durations = {}
    for f in files:  # headers only: the bar counts audio seconds, so one long file shows progress too
        try:
            durations[f] = probe_audio(f, check_tail=False).duration
        except AudioError:
            durations[f] = 0.0
    total = sum(durations.values())
    done_in = {"file": "", "at": 0.0}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s audio"),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=len(files) < 2 and total < 60) as bar:  # fmt: skip
        task = bar.add_task("predict", total=total)

        def step(file: str, at: float) -> None:
            if file != done_in["file"]:
                done_in.update(file=file, at=0.0)
            bar.advance(task, max(at - done_in["at"], 0.0))
            done_in["at"] = max(at, done_in["at"])

        def done(result: Any) -> None:
            results.append(result)
            if result.error:
                err_console.print(f"[red]failed:[/] {escape(result.file)}: {escape(result.error)}", highlight=False)
            step(result.file, durations.get(result.file, 0.0))

        failed = predict_to_file(ser=ser, files=files, output=output, segments=segments, on_result=done,
                                 on_progress=step, window=window, hop=hop, max_segment=max_segment)  # fmt: skip
    if output is not None:
        err_console.print(f"wrote {output} ({len(results)} files, {sum(len(r.segments) for r in results)} segments)")
    else:
        table = Table(title=f"emolingua predict ({ser.folder.name}; arousal/valence 0..1, 0.5 neutral)")
        for col in ("file", "start", "end", "label", "score", "arousal", "valence"):
            table.add_column(col, justify="right" if col not in ("file", "label") else "left")
        for r in results:
            if r.error:
                continue
            rows = r.segments if len(r.segments) > 1 else []
            for s in rows:
                table.add_row("", _fmt(s["start"]), _fmt(s["end"]), s["label"], _fmt(s["score"]),
                              _fmt(s.get("arousal")), _fmt(s.get("valence")))  # fmt: skip
            summary = r.summary
            table.add_row(f"[bold]{escape(r.file)}[/]", _fmt(summary["start"]), _fmt(summary["end"]),
                          f"[bold]{summary.get('label') or summary.get('note', '')}[/]", _fmt(summary.get("score")),
                          _fmt(summary.get("arousal")), _fmt(summary.get("valence")),
                          end_section=True)  # fmt: skip
        console.print(table)
    if failed:
        err_console.print(f"[red]{len(failed)} of {len(files)} files failed[/]")
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ serve
@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Option(help="default (shipped), a pipeline folder, or hf:<repo id>.")] = "default",
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Processes, each with its own copy of the model and queue.")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="Torch/BLAS threads per worker (default: cores / workers).")] = None,
    max_mb: Annotated[float, typer.Option(help="Largest request body in MB (1 MB = 10^6 bytes); larger: 413.")] = 50.0,
    max_seconds: Annotated[float, typer.Option(help="Longest recording in seconds; longer: 413.")] = 600.0,
    max_queue: Annotated[int, typer.Option(help="Requests waiting or running per worker; more: 429.")] = 16,
) -> None:
    """Serve the model over HTTP: POST /v1/predict, GET /v1/health, GET /v1/models, and a web page at /."""
    from emolingua.service import serve

    serve(model=model, host=host, port=port, workers=workers, threads=threads, max_bytes=int(max_mb * 1_000_000),
          max_seconds=max_seconds, max_queue=max_queue)  # fmt: skip


def main() -> None:
    """Console-script entry point: users' mistakes are one line on stderr and exit status 2 (see ``_Group``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
