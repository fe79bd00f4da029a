"""PNG plots for the FL report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], *, title: str, path: Path) -> Path:
    """Mean (solid) and worst-client (dashed) accuracy and macro-F1 over rounds, one colour per method.

    ``curves[method]`` holds equal-length lists ``round``, ``mean_acc``, ``worst_acc``, ``mean_f1``,
    ``worst_f1``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for i, (name, c) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        for ax, key in zip(axes, ("acc", "f1"), strict=True):
            ax.plot(c["round"], c[f"mean_{key}"], color=colour, label=name)
            ax.plot(c["round"], c[f"worst_{key}"], color=colour, linestyle="--", linewidth=0.9)
    return _save_pair(fig, axes, "round", [f"{label} (solid: mean, dashed: worst client)"
                                           for label in ("accuracy", "macro-F1")], title, path)


def _save_pair(fig: Any, axes: Sequence[Any], xlabel: str, ylabels: Sequence[str], title: str, path: Path) -> Path:
    """Label two side-by-side axes on a 0-1 scale, legend on the first, and write the PNG."""
    for ax, label in zip(axes, ylabels, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(values: Mapping[str, float], *, ylabel: str, title: str, path: Path) -> Path:
    """One bar per entry (e.g. uplink bytes per round per method)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = list(values)
    ax.bar(range(len(names)), [values[n] for n in names], color=[f"C{i % 10}" for i in range(len(names))])
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dp(points: Sequence[Mapping[str, Any]], *, baseline_acc: float, path: Path) -> Path:
    """Mean accuracy against epsilon (log scale) for the DP settings, with the non-private level."""
    fig, ax = plt.subplots(figsize=(6, 4))
    eps = [p["epsilon"] for p in points]
    ax.plot(eps, [p["mean_acc"] for p in points], marker="o", label="mean client accuracy")
    ax.plot(eps, [p["worst_acc"] for p in points], marker="v", linestyle="--", label="worst client")
    for p in points:
        ax.annotate(f"z={p['noise_multiplier']}", (p["epsilon"], p["mean_acc"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    ax.axhline(baseline_acc, color="grey", linestyle=":", label="no DP")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (delta = 1e-5), after the last round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_onboarding(rows: Mapping[str, Mapping[str, Sequence[float]]], *, path: Path) -> Path:
    """Macro-F1 against the joining worker's labelled windows k: mean (left) and worst held-out worker
    (right), one line per method. ``rows[method]`` holds equal-length lists ``k``, ``mean_f1``, ``worst_f1``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, (name, r) in enumerate(rows.items()):
        for ax, key in zip(axes, ("mean_f1", "worst_f1"), strict=True):
            ax.plot(r["k"], r[key], color=f"C{i % 10}", marker="o", label=name)
    return _save_pair(fig, axes, "labelled windows of the joining worker (k)",
                      [f"macro-F1, {label} held-out worker" for label in ("mean", "worst")],
                      "onboarding: leave one worker out, mean over seeds", path)
