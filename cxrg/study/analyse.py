"""`study export` and `study analyse`: the ratings as CSV, and the Appendix J statistics.

The analysis uses each rater's current score of each item (the latest in the history):
- per rater and model: n, mean +- sd (sample sd) of the scores;
- per rater and model: Spearman rho and p between score and CNR, and between score and mIoU;
- the paired analysis between two models A and B (default: the first two of ``study create --models``):
  per case that the rater scored for both, delta = A - B of CNR, mIoU and score; rho and p of delta score
  against each delta metric, per rater and for the raters' mean score;
- inter-rater agreement over the items both raters scored: quadratic-weighted Cohen's kappa per pair of
  raters, and Krippendorff's alpha (ordinal) over all raters, each with a 95 % percentile-bootstrap CI;
- a Figure-5-style PNG and results.md, summary.json and ratings.csv in STUDY/analysis/ (or --out).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import UsageError
from cxrg.runs import atomic_write_csv, atomic_write_json, atomic_write_text, save_figure
from cxrg.study import db, stats

RATING_FIELDS = ("rater", "case_id", "sample_id", "category", "phrase", "location", "model", "item_id",
                 "cnr", "miou", "score", "rated_at", "times_rated")
HISTORY_FIELDS = ("rating_id", "rater", "case_id", "sample_id", "model", "item_id", "score", "rated_at")
ALL_MODELS = "all models"
MEAN_RATER = "mean of raters"

_JOIN = ("FROM {table} r JOIN raters ON raters.id = r.rater_id JOIN items i ON i.id = r.item_id "
         "JOIN cases c ON c.id = i.case_id JOIN models m ON m.id = i.model_id")


def current_ratings(con) -> list[dict]:
    query = ("SELECT raters.name AS rater, c.id AS case_id, c.sample_id, c.category, c.phrase, c.location, "
             "m.name AS model, i.id AS item_id, i.cnr, i.miou, r.score, r.at AS rated_at, "
             "r.times AS times_rated " + _JOIN.format(table="current_ratings")
             + " ORDER BY raters.name, c.id, m.id")
    return [dict(row) for row in con.execute(query)]


def rating_history(con) -> list[dict]:
    query = ("SELECT r.id AS rating_id, raters.name AS rater, c.id AS case_id, c.sample_id, m.name AS model, "
             "i.id AS item_id, r.score, r.at AS rated_at " + _JOIN.format(table="ratings") + " ORDER BY r.id")
    return [dict(row) for row in con.execute(query)]


def export(study: Path, out: Path | None = None, history: bool = False) -> tuple[Path, int]:
    """Write the current ratings (or, with `history`, every score ever given) as CSV; (path, rows)."""
    con = db.open_study(study)
    try:
        rows = rating_history(con) if history else current_ratings(con)
    finally:
        con.close()
    out = Path(out) if out else Path(study) / ("ratings_history.csv" if history else "ratings.csv")
    atomic_write_csv(out, HISTORY_FIELDS if history else RATING_FIELDS, rows)
    return out, len(rows)


def _num(value) -> float:
    return math.nan if value is None else float(value)


def _mean_sd(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"n": int(array.size), "mean": float(array.mean()) if array.size else math.nan,
            "sd": float(array.std(ddof=1)) if array.size > 1 else math.nan}


def _corr(c: stats.Correlation) -> dict:
    return {"rho": c.rho, "p": c.p, "n": c.n}


def _agreement(a: stats.Agreement) -> dict:
    return {"value": a.value, "low": a.low, "high": a.high, "n": a.n}


def analyse_ratings(rows: list[dict], models: list[str], pair: tuple[str, str] | None, resamples: int = 2000,
                    seed: int = 0) -> dict:
    """Every statistic of the study from its current ratings (plain numbers, JSON-ready)."""
    raters = sorted({r["rater"] for r in rows})
    result: dict = {"raters": raters, "models": models, "pair": list(pair) if pair else None,
                    "ratings": len(rows), "scores": {}, "correlations": {}, "paired": {}, "agreement": {}}
    for rater in raters:
        mine = [r for r in rows if r["rater"] == rater]
        result["scores"][rater] = {}
        result["correlations"][rater] = {}
        for model in [*models, ALL_MODELS]:
            chosen = [r for r in mine if model == ALL_MODELS or r["model"] == model]
            if not chosen:
                continue
            scores = [r["score"] for r in chosen]
            result["scores"][rater][model] = _mean_sd(scores)
            result["correlations"][rater][model] = {
                metric: _corr(stats.spearman([_num(r[metric]) for r in chosen], scores))
                for metric in ("cnr", "miou")}
    if pair:
        result["paired"] = {who: _paired(rows, pair, who) for who in [*raters, MEAN_RATER]}
    result["agreement"] = _agreement_stats(rows, raters, resamples, seed)
    return result


def _case_scores(rows: list[dict], who: str) -> dict[tuple[int, str], dict]:
    """(case, model) -> {score, cnr, miou}; for MEAN_RATER the mean score of the raters who scored it."""
    out: dict[tuple[int, str], dict] = {}
    for r in rows:
        if who != MEAN_RATER and r["rater"] != who:
            continue
        entry = out.setdefault((r["case_id"], r["model"]), {"scores": [], "cnr": _num(r["cnr"]),
                                                             "miou": _num(r["miou"])})
        entry["scores"].append(r["score"])
    for entry in out.values():
        entry["score"] = float(np.mean(entry.pop("scores")))
    return out


def paired_deltas(rows: list[dict], pair: tuple[str, str], who: str) -> dict[str, np.ndarray]:
    """Per case scored under both models: delta (A - B) of score, CNR and mIoU."""
    scored = _case_scores(rows, who)
    a, b = pair
    with_a = {case for case, model in scored if model == a}
    cases = sorted(with_a & {case for case, model in scored if model == b})
    return {key: np.array([scored[(c, a)][key] - scored[(c, b)][key] for c in cases], dtype=np.float64)
            for key in ("score", "cnr", "miou")} | {"case_id": np.array(cases, dtype=np.int64)}


def _paired(rows: list[dict], pair: tuple[str, str], who: str) -> dict:
    d = paired_deltas(rows, pair, who)
    return {"n": int(d["case_id"].size),
            "mean_delta_score": float(d["score"].mean()) if d["score"].size else math.nan,
            "cnr": _corr(stats.spearman(d["cnr"], d["score"])),
            "miou": _corr(stats.spearman(d["miou"], d["score"]))}


def _agreement_stats(rows: list[dict], raters: list[str], resamples: int, seed: int) -> dict:
    by_rater = {rater: {r["item_id"]: r["score"] for r in rows if r["rater"] == rater} for rater in raters}
    out: dict = {"kappa": {}, "alpha": None}
    for first, second in itertools.combinations(raters, 2):
        shared = sorted(set(by_rater[first]) & set(by_rater[second]))
        agreement = stats.kappa_with_ci([by_rater[first][i] for i in shared],
                                        [by_rater[second][i] for i in shared], resamples, seed)
        out["kappa"][f"{first} vs {second}"] = _agreement(agreement)
    if len(raters) >= 2:
        items = sorted({r["item_id"] for r in rows})
        units = [[by_rater[rater].get(item) for rater in raters] for item in items]
        out["alpha"] = _agreement(stats.alpha_with_ci(units, "ordinal", resamples, seed))
    return out


# --- reporting ----------------------------------------------------------------------------------------------
def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in body]


def results_markdown(result: dict, study: Path, resamples: int) -> str:
    lines = [f"# Reader study: {study.name}", "",
             f"{result['ratings']} current ratings by {len(result['raters'])} rater(s) of "
             f"{len(result['models'])} model(s) ({', '.join(result['models'])}). Scores 1-5 (Appendix J "
             "criteria); boxes, metrics and model names were hidden from the raters.", "",
             "## Scores per rater and model (mean ± sd)", ""]
    body = [[rater, model, s["n"], f"{_f(s['mean'])} ± {_f(s['sd'])}"]
            for rater, per in result["scores"].items() for model, s in per.items()]
    lines += _table(["rater", "model", "n", "score"], body)
    lines += ["", "## Spearman correlation of score with CNR and mIoU", ""]
    body = [[rater, model, c["cnr"]["n"], _f(c["cnr"]["rho"]), _p(c["cnr"]["p"]), _f(c["miou"]["rho"]),
             _p(c["miou"]["p"])] for rater, per in result["correlations"].items() for model, c in per.items()]
    lines += _table(["rater", "model", "n", "rho (CNR)", "p", "rho (mIoU)", "p"], body)
    if result["pair"]:
        a, b = result["pair"]
        lines += ["", f"## Paired: delta = {a} − {b} per case", ""]
        body = [[who, d["n"], _f(d["mean_delta_score"]), _f(d["cnr"]["rho"]), _p(d["cnr"]["p"]),
                 _f(d["miou"]["rho"]), _p(d["miou"]["p"])] for who, d in result["paired"].items()]
        lines += _table(["rater", "cases", "mean Δscore", "rho (ΔCNR, Δscore)", "p", "rho (ΔmIoU, Δscore)",
                         "p"], body)
    lines += ["", "## Inter-rater agreement", "",
              f"95 % percentile bootstrap CI, {resamples} resamples over the items.", ""]
    body = [["quadratic-weighted Cohen's kappa", pair, a["n"], f"{_f(a['value'], 3)} [{_f(a['low'], 3)}, "
             f"{_f(a['high'], 3)}]"] for pair, a in result["agreement"]["kappa"].items()]
    alpha = result["agreement"]["alpha"]
    if alpha:
        body.append(["Krippendorff's alpha (ordinal)", "all raters", alpha["n"],
                     f"{_f(alpha['value'], 3)} [{_f(alpha['low'], 3)}, {_f(alpha['high'], 3)}]"])
    lines += _table(["measure", "raters", "items", "value [95 % CI]"], body) if body else \
        ["Agreement needs two raters who scored the same items."]
    lines += ["", "![Scores against the metrics](results.png)", ""]
    return "\n".join(lines)


def figure(rows: list[dict], result: dict, path: Path, seed: int = 0) -> None:
    """Per rater: score against CNR and against mIoU (each model its colour); with a pair, delta score
    against delta CNR and delta mIoU. Scores are jittered vertically so equal scores stay visible."""
    from cxrg.runs import headless_plots

    headless_plots()
    import matplotlib.pyplot as plt

    raters = result["raters"]
    pair = result["pair"]
    columns = 4 if pair else 2
    fig, axes = plt.subplots(len(raters), columns, figsize=(3.4 * columns, 2.9 * len(raters)), squeeze=False)
    rng = np.random.default_rng(seed)
    colours = dict(zip(result["models"], plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, strict=False))
    for r, rater in enumerate(raters):
        mine = [row for row in rows if row["rater"] == rater]
        for col, (metric, label) in enumerate((("cnr", "CNR"), ("miou", "mIoU"))):
            ax = axes[r, col]
            for model in result["models"]:
                chosen = [row for row in mine if row["model"] == model]
                if chosen:
                    jitter = rng.uniform(-0.15, 0.15, len(chosen))
                    ax.scatter([_num(row[metric]) for row in chosen],
                               np.array([row["score"] for row in chosen]) + jitter,
                               s=14, alpha=0.7, color=colours[model], label=model)
            c = result["correlations"][rater].get(ALL_MODELS, {}).get(metric, {})
            ax.set_title(f"{rater}: ρ = {_f(c.get('rho'))} (p {_p(c.get('p'))})", fontsize=9)
            ax.set_xlabel(label)
            ax.set_ylabel("score")
            ax.set_yticks(range(1, 6))
            if r == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower right")
        if pair:
            d = paired_deltas(rows, tuple(pair), rater)
            for col, (metric, label) in enumerate((("cnr", "ΔCNR"), ("miou", "ΔmIoU")), start=2):
                ax = axes[r, col]
                ax.scatter(d[metric], d["score"] + rng.uniform(-0.1, 0.1, d["score"].size), s=14, alpha=0.7,
                           color="black")
                ax.axhline(0, lw=0.5, color="grey")
                ax.axvline(0, lw=0.5, color="grey")
                c = result["paired"][rater][metric]
                ax.set_title(f"{rater}: {pair[0]} − {pair[1]}: ρ = {_f(c['rho'])}", fontsize=9)
                ax.set_xlabel(label)
                ax.set_ylabel("Δscore")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def analyse(study: Path, out: Path | None = None, pair: Sequence[str] | None = None, resamples: int = 2000,
            seed: int = 0) -> tuple[dict, Path]:
    study = Path(study)
    con = db.open_study(study)
    try:
        models = [row["name"] for row in con.execute("SELECT name FROM models ORDER BY id")]
        rows = current_ratings(con)
    finally:
        con.close()
    if not rows:
        raise UsageError("the study has no ratings yet", where=str(study),
                         hint="rate some cases with `cxrg study serve` first")
    if pair:
        if len(pair) != 2 or pair[0] == pair[1] or any(m not in models for m in pair):
            raise UsageError(f"--pair needs two different models of the study, got {','.join(pair)}",
                             hint=f"models: {', '.join(models)}")
        chosen: tuple[str, str] | None = (pair[0], pair[1])
    else:
        chosen = (models[0], models[1]) if len(models) >= 2 else None
    result = analyse_ratings(rows, models, chosen, resamples, seed)
    out = Path(out) if out else study / "analysis"
    atomic_write_csv(out / "ratings.csv", RATING_FIELDS, rows)
    atomic_write_json(out / "summary.json", json.loads(json.dumps(result, default=float)))
    atomic_write_text(out / "results.md", results_markdown(result, study, resamples))
    figure(rows, result, out / "results.png", seed)
    return result, out
