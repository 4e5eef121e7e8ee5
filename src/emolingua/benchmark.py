"""One command that trains and scores a model on every corpus under honest protocols.

>>> cfg = BenchmarkConfig(corpora="../shared/corpora", output="runs/loso", protocol="loso")   # doctest: +SKIP
>>> results = run_benchmark(cfg)                                                            # doctest: +SKIP

Steps: scan (or read a manifest) -> extract features into the store (cached) -> splits ->
one job per (corpus or held-out target, fold) -> scores, plots and a Markdown report in
``output``. Each finished job is written to ``output/jobs/`` at once, so a killed run
resumes where it stopped. Model selection (the regularisation inside the model, and the
layer when ``layers="select"``) looks at the valid split only; test predictions of every
layer candidate are kept solely for the per-layer analysis plot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emolingua.corpora import read_manifest, scan_corpora, write_manifest
from emolingua.features import get_extractor
from emolingua.features.extract import default_store_dir, extract_to_store
from emolingua.features.store import FeatureStore
from emolingua.metrics import score_classification, score_regression, unweighted_accuracy
from emolingua.models import Dataset, get_model
from emolingua.protocols import (
    DEFAULT_REPEATS,
    DEFAULT_SHOTS,
    SHARED_LABELS,
    TRANSFER_PROTOCOLS,
    make_splits,
    make_transfer_splits,
)
from emolingua.reports import markdown_table, plot_confusion, plot_few_shot, plot_layers

__all__ = ["BenchmarkConfig", "load_emobox_reference", "run_benchmark"]

TARGETS = ("label", "intensity", "arousal", "valence")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a run depends on; ``BenchmarkConfig.from_file`` reads it back from YAML/TOML/JSON.

    corpora: a folder to scan, or a manifest file (.parquet/.csv/.jsonl).
    layers: ``select`` (the best single layer, chosen on valid in each fold), ``all``, or a layer index.
    labels: the label set of transfer protocols (default neutral/happy/sad/angry).
    """

    corpora: str
    output: str
    features: str = "whisper-base"
    feature_options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "loso"
    model: str = "logreg"
    model_options: dict[str, Any] = field(default_factory=dict)
    target: str = "label"
    layers: str = "select"
    normalise: str = "corpus"
    labels: tuple[str, ...] = SHARED_LABELS
    shots: tuple[int, ...] = DEFAULT_SHOTS
    repeats: int = DEFAULT_REPEATS
    only_corpora: tuple[str, ...] = ()
    seed: int = 0
    store: str | None = None
    n_boot: int = 1000
    workers: int = 1
    emobox_reference: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")
        for name in ("labels", "shots", "only_corpora"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def transfer(self) -> bool:
        return self.protocol.split(":")[0] in {p.split(":")[0] for p in TRANSFER_PROTOCOLS}

    @property
    def regression(self) -> bool:
        return self.target in ("arousal", "valence")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    def fingerprint(self) -> str:
        """What the jobs' results depend on (not output, workers or the reference file)."""
        keep = {k: v for k, v in self.to_dict().items() if k not in ("output", "workers", "emobox_reference", "n_boot")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> BenchmarkConfig:
        """Read a YAML, TOML or JSON config; ``overrides`` (not None) win."""
        p = Path(path)
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


# ---------------------------------------------------------------------------- data
def _without_categories(cfg: BenchmarkConfig, manifest: pd.DataFrame) -> list[str]:
    """Corpora with no emotion categories (at most one label) but intensity levels, like BAVED
    (whose level 1 alone is labelled neutral): scored on intensity."""
    if cfg.target != "label" or cfg.transfer:
        return []
    names = []
    for corpus, rows in manifest.groupby("corpus"):
        labels = rows["label"].astype(str)
        if labels[labels != ""].nunique() < 2 and (rows["intensity"].astype(str) != "").any():
            names.append(str(corpus))
    return names


def _manifest(cfg: BenchmarkConfig, out: Path) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The rows to score, the corpora to score on intensity instead, and every corpus's language."""
    source = Path(cfg.corpora)
    if source.is_file():
        manifest = read_manifest(source)
    else:
        manifest = scan_corpora(root=source).manifest
        if manifest.empty:
            raise FileNotFoundError(f"no supported corpus found in {source}")
        write_manifest(manifest, out / "manifest.parquet")
    if cfg.only_corpora:
        manifest = manifest[manifest["corpus"].isin(cfg.only_corpora) | manifest["reader"].isin(cfg.only_corpora)]
    without_categories = _without_categories(cfg, manifest)
    languages = manifest.groupby("corpus")["language"].first().astype(str).to_dict()
    manifest = manifest[~manifest["corpus"].isin(without_categories)]
    column = cfg.target
    if cfg.regression:
        manifest = manifest[manifest[column].notna() & (manifest["label"].astype(str) != "")]
    else:
        manifest = manifest[manifest[column].astype(str) != ""]
    return manifest.reset_index(drop=True), without_categories, languages


def _features(cfg: BenchmarkConfig, manifest: pd.DataFrame, *, progress: bool) -> tuple[np.ndarray, pd.DataFrame]:
    extractor = get_extractor(cfg.features, **cfg.feature_options)
    store = FeatureStore(root=cfg.store or default_store_dir())
    paths = manifest["path"].tolist()
    summary = extract_to_store(paths=paths, extractor=extractor, store=store, durations=manifest["duration"].tolist(),
                               progress=progress)  # fmt: skip
    X, found = store.load_pooled(paths=paths, extractor=extractor)
    if not found.all():
        warnings.warn(f"{int((~found).sum())} files have no features ({summary.failed} failed to decode); left out")
    return X[found], manifest[found].reset_index(drop=True)


def _splits(cfg: BenchmarkConfig, manifest: pd.DataFrame) -> pd.DataFrame:
    if cfg.transfer:
        labels = cfg.labels if cfg.target == "label" else ()
        column = "label" if cfg.regression else cfg.target
        splits = make_transfer_splits(manifest, protocol=cfg.protocol, labels=labels, target_column=column,
                                      seed=cfg.seed, shots=cfg.shots, repeats=cfg.repeats)  # fmt: skip
        splits["unit"] = splits["target"]
    else:
        stratify = "label" if cfg.regression else cfg.target
        splits = make_splits(manifest, protocol=cfg.protocol, seed=cfg.seed, stratify_on=stratify)
        splits["unit"] = splits["corpus"]
    return splits


# ---------------------------------------------------------------------------- jobs
def _candidates(cfg: BenchmarkConfig, n_streams: int) -> list[str]:
    if cfg.layers == "select" and cfg.model == "layer-weights":
        return ["all"]  # the model weighs the layers itself
    if cfg.layers == "select":  # each single layer; all layers together is `layers="all"`
        return [str(i) for i in range(n_streams)]
    return [cfg.layers]


def _view(candidate: str) -> Any:
    return "all" if candidate == "all" else (int(candidate),)


def _dataset(X: np.ndarray, manifest: pd.DataFrame, idx: np.ndarray, target: str) -> Dataset:
    rows = manifest.iloc[idx]
    y = rows[target].to_numpy(dtype=float) if target in ("arousal", "valence") else rows[target].astype(str).to_numpy()
    return Dataset(X=X[idx], y=y, corpus=rows["corpus"].astype(str).to_numpy(),
                   language=rows["language"].astype(str).to_numpy(), speaker=rows["speaker"].astype(str).to_numpy())  # fmt: skip


def _score_valid(cfg: BenchmarkConfig, model: Any, valid: Dataset) -> float:
    if len(valid.y) == 0:
        return float("nan")
    pred = model.predict(valid)
    if cfg.regression:
        from emolingua.metrics import ccc

        return ccc(valid.y, pred)
    return unweighted_accuracy(valid.y, pred)


def _normalise_transfer(X: np.ndarray, manifest: pd.DataFrame, idx: dict[str, np.ndarray]) -> np.ndarray:
    """Per-corpus z-scores for transfer folds: a source corpus by its training rows; a target
    corpus by all of its rows in the fold (its few labelled shots and its test rows, labels
    unused), so that K = 0 and K > 0 see the target on the same scale."""
    out = X.copy()
    corpus = manifest["corpus"].to_numpy()
    targets = set(corpus[idx["test"]])
    used = np.concatenate([idx["train"], idx["valid"], idx["test"]])
    for name in set(corpus[used]):
        rows = used[corpus[used] == name]
        basis = rows if name in targets else idx["train"][corpus[idx["train"]] == name]
        basis = basis if len(basis) else rows
        mean, std = X[basis].mean(axis=0), X[basis].std(axis=0)
        out[rows] = (X[rows] - mean) / np.where(std > 1e-8, std, 1.0)
    return out


def _fit_candidate(cfg: BenchmarkConfig, cand: str, normalise: str, train: Dataset, valid: Dataset,
                   test: Dataset) -> dict[str, Any]:  # fmt: skip
    """One layer candidate: fit on train (its own selection on valid), score valid, predict test."""
    model = get_model(cfg.model, layers=_view(cand), normalise=normalise, seed=cfg.seed, **cfg.model_options)
    model.fit(train, valid=valid if len(valid.y) else None)
    pred = model.predict(test)
    return {
        "valid_score": _score_valid(cfg, model, valid),
        "test_pred": [float(p) for p in pred] if cfg.regression else [str(p) for p in pred],
        "selected": getattr(model, "selected", {}),
    }


def _run_job(cfg: BenchmarkConfig, X: np.ndarray, manifest: pd.DataFrame, rows: pd.DataFrame) -> dict[str, Any]:
    """Fit every layer candidate on train, pick on valid, predict test."""
    index = pd.Series(np.arange(len(manifest)), index=manifest["path"])
    idx = {r: index.loc[rows.loc[rows["role"] == r, "path"]].to_numpy() for r in ("train", "valid", "test")}
    column = cfg.target
    normalise = cfg.normalise
    if cfg.transfer and cfg.normalise == "corpus":
        X, normalise = _normalise_transfer(X, manifest, idx), "none"
    train, valid, test = (_dataset(X, manifest, idx[r], column) for r in ("train", "valid", "test"))
    by_candidate: dict[str, Any] = {}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if cfg.workers > 1 else None):  # parallel jobs: one BLAS thread each
        for cand in _candidates(cfg, X.shape[1]):
            by_candidate[cand] = _fit_candidate(cfg, cand, normalise, train, valid, test)
    scores = {c: v["valid_score"] for c, v in by_candidate.items()}
    best = max(scores, key=lambda c: -np.inf if np.isnan(scores[c]) else scores[c])
    test_rows = manifest.iloc[idx["test"]]
    return {
        "unit": str(rows["unit"].iat[0]),
        "fold": int(rows["fold"].iat[0]),
        "shots": int(rows["shots"].iat[0]) if "shots" in rows else 0,
        "repeat": int(rows["repeat"].iat[0]) if "repeat" in rows else 0,
        "labels": str(rows["labels"].iat[0]) if "labels" in rows else "",
        "speaker_independent": bool(rows["speaker_independent"].all()),
        "n_train": len(idx["train"]),
        "n_valid": len(idx["valid"]),
        "chosen": best,
        "chosen_selected": by_candidate[best]["selected"],
        "valid_scores": scores,
        "test_path": test_rows["path"].tolist(),
        "test_corpus": test_rows["corpus"].astype(str).tolist(),
        "test_speaker": test_rows["speaker"].astype(str).tolist(),
        "test_true": test_rows[column].astype(float).tolist() if cfg.regression else test_rows[column].astype(str).tolist(),
        "test_pred": by_candidate[best]["test_pred"],
        "candidate_pred": {c: v["test_pred"] for c, v in by_candidate.items()},
    }


def _job_name(unit: str, fold: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{unit}-fold{fold:03d}")


def _run_jobs(cfg: BenchmarkConfig, X: np.ndarray, manifest: pd.DataFrame, splits: pd.DataFrame, out: Path,
              *, progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    jobs_dir = out / "jobs" / cfg.fingerprint()
    jobs_dir.mkdir(parents=True, exist_ok=True)
    groups = [(name, rows) for name, rows in splits.groupby(["unit", "fold"], sort=True)]
    todo = [(unit, fold, rows) for (unit, fold), rows in groups if not (jobs_dir / f"{_job_name(unit, fold)}.json").exists()]

    from joblib import Parallel, delayed
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    def save(result: dict[str, Any]) -> None:
        path = jobs_dir / f"{_job_name(result['unit'], result['fold'])}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, path)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), disable=not progress) as bar:  # fmt: skip
        task = bar.add_task(f"{cfg.model} on {cfg.protocol}", total=len(groups), completed=len(groups) - len(todo))
        runner = Parallel(n_jobs=cfg.workers, return_as="generator_unordered")
        for result in runner(delayed(_run_job)(cfg, X, manifest, rows) for _, _, rows in todo):
            save(result)
            bar.advance(task)
    return [json.loads((jobs_dir / f"{_job_name(u, f)}.json").read_text()) for (u, f), _ in groups]


# ---------------------------------------------------------------------------- scoring
def load_emobox_reference(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """The EmoBox UA table (Markdown) as {corpus: {backbone: UA %}}."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("|")]
    header = [c.strip().lower() for c in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, float]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for corpus, value in zip(header[1:], cells[1:]):
            table.setdefault(corpus, {})[cells[0]] = float(value)
    return table


def _emobox_reference(cfg: BenchmarkConfig) -> dict[str, dict[str, float]]:
    if not cfg.protocol.startswith("emobox:"):
        return {}
    candidates = [cfg.emobox_reference] if cfg.emobox_reference else []
    folder = Path(cfg.protocol.split(":", 1)[1])
    candidates += [str(d / "emobox-ua.md") for d in (folder, folder.parent, folder.parent.parent / "reference")]
    for c in candidates:
        if c and Path(c).is_file():
            return load_emobox_reference(c)
    return {}


def _score(cfg: BenchmarkConfig, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per test corpus (and per K for few-shot): pooled test predictions over folds."""
    rows = []
    for job in jobs:
        for i, path in enumerate(job["test_path"]):
            rows.append({"unit": job["unit"], "fold": job["fold"], "shots": job["shots"], "repeat": job["repeat"],
                         "labels": job["labels"], "si": job["speaker_independent"], "corpus": job["test_corpus"][i],
                         "speaker": job["test_speaker"][i], "true": job["test_true"][i], "pred": job["test_pred"][i],
                         **{f"cand:{c}": p[i] for c, p in job["candidate_pred"].items()}})  # fmt: skip
    table = pd.DataFrame(rows)
    candidates = [c[5:] for c in table.columns if c.startswith("cand:")]
    results: dict[str, Any] = {"corpora": [], "few_shot": [], "layers": {}}
    few_shot = cfg.protocol.startswith("few-shot")
    keys = ["corpus", "shots"] if few_shot else ["corpus"]
    for key, part in table.groupby(keys, sort=True):
        corpus = key[0] if isinstance(key, tuple) else key
        si = bool(part["si"].all())
        protocol = cfg.protocol
        if cfg.regression:
            res = score_regression(part["true"].astype(float), part["pred"].astype(float), protocol=protocol,
                                   speaker_independent=si).to_dict()  # fmt: skip
        else:
            labels = sorted(set(part["true"]) | set(part["pred"]))
            groups = part["speaker"] if si and (part["speaker"] != "").all() else None
            res = score_classification(part["true"], part["pred"], labels=labels, protocol=protocol,
                                       speaker_independent=si, groups=groups, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()  # fmt: skip
            fold_ua = [unweighted_accuracy(f["true"], f["pred"]) for _, f in part.groupby(["fold"])]
            res["fold_ua_mean"], res["fold_ua_std"] = float(np.mean(fold_ua)), float(np.std(fold_ua))
            res["folds"] = len(fold_ua)
            res["scored_labels"] = sorted(set(part["true"]))
        res["corpus"] = corpus
        res["n"] = len(part)
        if few_shot:
            per_repeat = [unweighted_accuracy(r["true"], r["pred"]) for _, r in part.groupby("repeat")]
            res["shots"] = int(key[1])
            res["ua_repeats"] = per_repeat
            res["ua_mean"], res["ua_std"] = float(np.mean(per_repeat)), float(np.std(per_repeat))
            results["few_shot"].append(res)
        else:
            results["corpora"].append(res)
            if not cfg.regression and len(candidates) > 1:
                results["layers"][corpus] = {c: unweighted_accuracy(part["true"], part[f"cand:{c}"]) for c in candidates}
    results["chosen"] = pd.Series([j["chosen"] for j in jobs]).value_counts().to_dict()
    return results


# ---------------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}"


def _write_report(cfg: BenchmarkConfig, results: dict[str, Any], languages: dict[str, str], out: Path,
                  seconds: float) -> None:  # fmt: skip
    lang = {**languages, **{f"{k} (intensity)": v for k, v in languages.items()}}
    reference = _emobox_reference(cfg)
    lines = [f"# emolingua benchmark: {cfg.model} on {cfg.features}, protocol `{cfg.protocol}`", ""]
    scope = " (held-out corpora by their own rows, labels unused)" if cfg.transfer and cfg.normalise == "corpus" else ""
    lines.append(f"Target `{cfg.target}`; layers `{cfg.layers}` (chosen on valid); feature normalisation per "
                 f"`{cfg.normalise}`{scope}; seed {cfg.seed}; {seconds:.0f} s. SI = speaker independent, SD = speaker dependent.")  # fmt: skip
    lines.append("")
    if results["corpora"] and not cfg.regression:
        header = ["corpus", "language", "protocol", "SI/SD", "utterances", "classes", "UA % [95% CI]", "WA %", "macro-F1 %",
                  "UA per fold (mean ± sd)"]  # fmt: skip
        if reference:
            header += ["EmoBox whisper-large-v3", "EmoBox best"]
        body = []
        for r in results["corpora"]:
            row = [r["corpus"], lang.get(r["corpus"], ""), cfg.protocol if not cfg.protocol.startswith("emobox:") else "emobox",
                   "SI" if r["speaker_independent"] else "SD", r["n"], len(r["scored_labels"]),
                   f"{_pct(r['ua'])} [{_pct(r['ua_ci'][0])}, {_pct(r['ua_ci'][1])}]", _pct(r["wa"]), _pct(r["macro_f1"]),
                   f"{_pct(r['fold_ua_mean'])} ± {_pct(r['fold_ua_std'])} ({r['folds']})"]  # fmt: skip
            if reference:
                ref = reference.get(r["corpus"].split("-")[0], {})
                best = max(ref.items(), key=lambda kv: kv[1]) if ref else None
                row += [f"{ref['whisper-large-v3']:.1f}" if "whisper-large-v3" in ref else "-",
                        f"{best[1]:.1f} ({best[0]})" if best else "-"]  # fmt: skip
            body.append(row)
        lines += [markdown_table(header=header, rows=body), ""]
        if cfg.transfer:
            lines.append("Scored labels per corpus: " + "; ".join(f"{r['corpus']}: {', '.join(r['scored_labels'])}"
                                                                   for r in results["corpora"]))  # fmt: skip
            lines.append("")
    if results["corpora"] and cfg.regression:
        header = ["corpus", "language", "SI/SD", "utterances", "CCC", "Pearson r", "R²"]
        body = [[r["corpus"], lang.get(r["corpus"], ""), "SI" if r["speaker_independent"] else "SD", r["n"],
                 f"{r['ccc']:.3f}", f"{r['pearson']:.3f}", f"{r['r2']:.3f}"] for r in results["corpora"]]  # fmt: skip
        lines += [markdown_table(header=header, rows=body), ""]
    if results["few_shot"]:
        ks = sorted({r["shots"] for r in results["few_shot"]})
        header = ["corpus", "SI/SD"] + [f"K={k}" for k in ks]
        body = []
        for corpus in sorted({r["corpus"] for r in results["few_shot"]}):
            cells = {r["shots"]: r for r in results["few_shot"] if r["corpus"] == corpus}
            si = all(c["speaker_independent"] for c in cells.values())
            body.append([corpus, "SI" if si else "SD"] + [f"{_pct(cells[k]['ua_mean'])} ± {_pct(cells[k]['ua_std'])}"
                                                           if k in cells else "-" for k in ks])  # fmt: skip
        lines += [f"UA % (mean ± sd over {cfg.repeats} seeds), K labelled target utterances per class:", "",
                  markdown_table(header=header, rows=body), ""]  # fmt: skip
    if results["layers"]:
        cands = list(next(iter(results["layers"].values())))
        lines += ["Per-layer analysis (test UA % of each candidate; the reported model is the one chosen on valid, "
                  f"chosen counts {results['chosen']}):", "",
                  markdown_table(header=["corpus", *cands],
                                 rows=[[c, *[_pct(v[k]) for k in cands]] for c, v in results["layers"].items()]), ""]  # fmt: skip
    lines.append("Figures: " + ", ".join(f"`{p.relative_to(out)}`" for p in sorted(out.rglob("*.png"))))
    lines += ["", "Reproduce: `emolingua benchmark --config config.yaml` (written beside this report)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _plots(cfg: BenchmarkConfig, results: dict[str, Any], out: Path) -> None:
    for r in results["corpora"]:
        if "confusion" in r:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", r["corpus"]).strip("-")
            plot_confusion(confusion=r["confusion"], labels=r["labels"], path=out / "confusion" / f"{name}.png",
                           title=f"{r['corpus']} ({'SI' if r['speaker_independent'] else 'SD'}), UA {_pct(r['ua'])} %")  # fmt: skip
    if results["layers"]:
        layer_only = {c: [v[k] for k in v if k != "all"] for c, v in results["layers"].items()}
        plot_layers(ua=layer_only, path=out / "layers.png", title=f"{cfg.features}: UA of a probe on each layer ({cfg.protocol.split(':')[0]})")
    if results["few_shot"]:
        curves: dict[str, dict[int, tuple[float, float]]] = {}
        for r in results["few_shot"]:
            curves.setdefault(r["corpus"], {})[r["shots"]] = (r["ua_mean"], r["ua_std"])
        plot_few_shot(curves=curves, path=out / "few_shot.png", title=f"Few-shot adaptation ({cfg.model}, {cfg.features})")


def run_benchmark(cfg: BenchmarkConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a benchmark and write results.json, report.md and the figures to ``cfg.output``."""
    start = time.perf_counter()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest, without_categories, languages = _manifest(cfg, out)
        X, manifest = _features(cfg, manifest, progress=progress)
        splits = _splits(cfg, manifest)
    notes += sorted({str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)})
    jobs = _run_jobs(cfg, X, manifest, splits, out, progress=progress) if len(splits) else []
    results = _score(cfg, jobs) if jobs else {"corpora": [], "few_shot": [], "layers": {}, "chosen": {}}
    if without_categories:  # e.g. BAVED: no categories, so its intensity levels are the classes
        sub = dataclasses.replace(cfg, target="intensity", only_corpora=tuple(without_categories),
                                  output=str(out / "intensity"))  # fmt: skip
        extra = run_benchmark(sub, progress=progress)
        for r in extra["corpora"]:
            r["corpus"] = f"{r['corpus']} (intensity)"
        results["corpora"] += extra["corpora"]
        results["layers"].update({f"{k} (intensity)": v for k, v in extra["layers"].items()})
        notes.append(f"scored on intensity levels (no emotion categories): {', '.join(without_categories)}")
    seconds = time.perf_counter() - start
    results.update({"config": cfg.to_dict(), "notes": notes, "seconds": seconds,
                    "emobox_reference": _emobox_reference(cfg)})  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    _plots(cfg, results, out)
    _write_report(cfg, results, languages, out, seconds)
    return results
