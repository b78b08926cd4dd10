"""The overseer's figure blocks: its policy with the oracle, the trained detector, its training and cost."""

from __future__ import annotations

from pathlib import Path

from figure_sources import MS, Fig, Row, figs, load


def figs_overseer(root: Path, file: str = "overseer.json") -> list[Fig]:
    """bench_overseer.py's figures, per run in the file (without, with, and the oracle if run).

    J is ``j_mean_after_prompt``, ``j_mean`` in result files written before that key was
    renamed (read from such a file, and cited, as it stands)."""
    data = load(root, file)
    oracle = data["settings"]["overseer"] == "oracle"
    names = {
        "without": "without overseer",
        "with": "with oracle overseer" if oracle else "with the trained overseer",
        "oracle": "with oracle overseer",
    }
    rows: list[Row] = []
    for run in (r for r in ("without", "with", "oracle") if r in data):
        name, result = names[run], data[run]
        j_key = "j_mean_after_prompt" if "j_mean_after_prompt" in result else "j_mean"
        entries, exits = result["entry_delay"]["count"], result["exit_delay"]["count"]
        rows += [
            (f"{name}: J, mean over cases", f"{run}.{j_key}"),
            *((f"{name}: J {c}", f"{run}.per_class_j.{c}") for c in sorted(result["per_class_j"])),
            (f"{name}: entry delay, mean", f"{run}.entry_delay.mean", ".1f", " frames"),
            (f"{name}: entry delay, max", f"{run}.entry_delay.max", "d", " frames"),
            (f"{name}: entries missed (of {entries})", f"{run}.entry_delay.missed", "d"),
            (f"{name}: exit delay, mean", f"{run}.exit_delay.mean", ".1f", " frames"),
            (f"{name}: exit delay, max", f"{run}.exit_delay.max", "d", " frames"),
            (f"{name}: exits missed (of {exits})", f"{run}.exit_delay.missed", "d"),
        ]
        if "false_reprompts" in result and run != "without":
            rows += [
                (f"{name}: re-prompts", f"{run}.reprompts", "d"),
                (f"{name}: re-prompts that lowered J", f"{run}.false_reprompts", "d"),
            ]
    if "gap_closed" in data["targets"]:
        rows.append(("share of the J gap to the oracle closed", "targets.gap_closed", ".2f"))
    if "overseer_file" in data:
        rows.append(("the detector's ONNX file", "overseer_file.mb", ".1f", " MB"))
    return figs(file, *rows)


def figs_overseer_training(root: Path) -> list[Fig]:
    """The detector's training run: the last epoch's held-out figures and the time it took."""
    data = load(root, "overseer_training.json")
    last = len(data["epochs"]) - 1
    at = f"epochs.{last}"
    rows: list[Row] = [
        ("epochs", "config.epochs", "d"),
        ("held-out mask AP@[.5:.95], last epoch", f"{at}.val_mask_ap"),
        ("held-out mask AP@0.5, last epoch", f"{at}.val_mask_ap50"),
        *(
            (f"held-out mask AP@0.5, {c}", f"{at}.val_mask_ap50_per_class.{c}")
            for c in sorted(data["epochs"][last]["val_mask_ap50_per_class"])
        ),
        ("held-out Dice of ground-truth instances, last epoch", f"{at}.val_dice"),
        ("one epoch's time (the last, with its validation)", f"{at}.seconds", ".0f", " s"),
    ]
    return figs("overseer_training.json", *rows)


def figs_overseer_cost(root: Path) -> list[Fig]:
    """The trained overseer at 25 fps, sent in real time: server time and LATE answers with and without."""
    rows: list[Row] = []
    for run, name in (("without", "without overseer"), ("with", "with the trained overseer")):
        rows += [
            (f"{name}: frames", f"{run}.frames", "d"),
            (f"{name}: server time p50", f"{run}.server_ms.p50", ".1f", MS),
            (f"{name}: server time p99", f"{run}.server_ms.p99", ".1f", MS),
            (f"{name}: LATE answers", f"{run}.late", "d"),
            (f"{name}: DROPPED answers", f"{run}.dropped", "d"),
        ]
    return figs("overseer_cost_25fps.json", *rows)
