"""``hrc-fl evaluate-intention``: per-subject IMU table on the real watch data, hand/pose parts on their
real data sets, and fusion on COMPOSED episodes; writes intention_eval.md and intention_eval.json."""

from __future__ import annotations

import argparse

NAME = "evaluate-intention"
HELP = ("Evaluate the intention model on the real watch data per subject ((a) trained on the other subjects, "
        "(b) own data only, (c) (a) + personal head fine-tuned), plus hand/pose parts and COMPOSED fusion.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder for intention_eval.md and intention_eval.json")
    parser.add_argument("--subjects", default="", help="comma-separated subjects (default: all 10)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the shared training in (a)")
    parser.add_argument("--window", type=int, default=100, help="IMU window, samples at 50 Hz")
    parser.add_argument("--no-composed", action="store_true", help="skip the hand/pose and composed fusion part")
    parser.add_argument("--quick", action="store_true", help="one epoch everywhere: a smoke run, not a result")
    parser.add_argument("--seed", type=int, default=0, help="seed of models and batches")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")


def _table(rows) -> str:
    lines = ["| subject | test windows | (a) others acc | (a) F1 | (b) own acc | (b) F1 "
             "| (c) a+head FT acc | (c) F1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.subject} | {r.test_windows} | {r.a_others['accuracy']:.3f} "
                     f"| {r.a_others['macro_f1']:.3f} | "
                     f"{r.b_own['accuracy']:.3f} | {r.b_own['macro_f1']:.3f} | {r.c_finetuned['accuracy']:.3f} | "
                     f"{r.c_finetuned['macro_f1']:.3f} |")
    mean = {k: {m: sum(getattr(r, k)[m] for r in rows) / len(rows) for m in ("accuracy", "macro_f1")}
            for k in ("a_others", "b_own", "c_finetuned")}
    lines.append(f"| **mean** | {sum(r.test_windows for r in rows)} | {mean['a_others']['accuracy']:.3f} | "
                 f"{mean['a_others']['macro_f1']:.3f} | {mean['b_own']['accuracy']:.3f} "
                 f"| {mean['b_own']['macro_f1']:.3f} | "
                 f"{mean['c_finetuned']['accuracy']:.3f} | {mean['c_finetuned']['macro_f1']:.3f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from dataclasses import asdict
    from pathlib import Path

    from hrc_fl.commands._intention_data import check_arguments, load_watch_windows
    from hrc_fl.data.atomic_io import atomic_write_text
    from hrc_fl.intention.recipes import (
        COMPOSED_BODY_CLASSES,
        COMPOSED_HAND_CLASSES,
        TrainSettings,
        evaluate_subjects,
        train_composed,
    )
    from hrc_fl.intention.windows import make_split

    check_arguments(args)
    start = time.monotonic()
    cpu_start = time.process_time()
    recordings, labels, spec = load_watch_windows(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subjects = [int(s) for s in args.subjects.split(",") if s.strip()] or None
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    if args.quick:
        settings = TrainSettings(epochs=1, finetune_epochs=1, own_epochs=1, seed=args.seed)
    rows = evaluate_subjects(recordings, len(labels), spec, settings, subjects)
    split_text = (f"Split: every recording is cut at {spec.train_fraction:.0%} of its length; training windows lie "
                  f"before the cut, test windows after it (no sample in both). Windows {spec.window} samples "
                  f"({spec.window / 50:.1f} s at 50 Hz), step {spec.step}. IMU-only model (shared 1-D CNN encoder, "
                  "personal fusion head). (a) trained on the other 9 subjects' training windows; (b) on the "
                  "subject's own training windows only; (c) (a) with only the personal head fine-tuned on the "
                  "subject's own training windows. All scored on the subject's test windows.")
    md = [f"# Intention model evaluation (real watch data, {len(labels)} classes: {', '.join(labels)})", "",
          "## IMU, per subject (real data)", "", split_text, "", _table(rows), ""]
    result: dict = {"labels": list(labels), "window": spec.window, "step": spec.step, "quick": args.quick,
                    "train_fraction": spec.train_fraction, "epochs": args.epochs,
                    "per_subject": [asdict(r) for r in rows]}
    if not args.no_composed:
        train, test = make_split(recordings, spec)
        composed = train_composed(train, test, len(labels), spec.window, settings, args.seed)
        subsets = composed.by_modalities
        result["composed"] = {"note": "COMPOSED episodes: real unimodal recordings joined by class, not recorded "
                              "together", "hand_classes": list(COMPOSED_HAND_CLASSES),
                              "body_classes": list(COMPOSED_BODY_CLASSES), "by_modalities": subsets,
                              "hands_test_samples": composed.hands_test_samples,
                              "pose_test_samples": composed.pose_test_samples}
        md += ["## Hand and pose parts (real data sets) and fusion on COMPOSED episodes", "",
               "COMPOSED: no data set records IMU, hands and body together. Each episode joins a real IMU window "
               "of watch class k with a real HandPose sample of class "
               f"{list(COMPOSED_HAND_CLASSES)}[k] and a real BodyPose sample of class {list(COMPOSED_BODY_CLASSES)}[k] "
               "(pose-classification-kit; no subject ids there: seeded random half/half split). One model trained "
               "with modality dropout; scored with only the listed modalities present. The 'hands' and 'pose' rows "
               "are the gesture and pose parts on held-out real samples of their data sets.", "",
               "| modalities present (composed) | accuracy | macro-F1 |", "|---|---:|---:|"]
        md += [f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for name, m in subsets.items()]
        md.append("")
    result["runtime_s"] = round(time.monotonic() - start, 1)
    result["cpu_s"] = round(time.process_time() - cpu_start, 1)
    md.append(f"Runtime {result['runtime_s']} s wall, {result['cpu_s']} s CPU, {args.threads} torch thread(s), "
              f"seed {args.seed}.")
    atomic_write_text(out / "intention_eval.md", "\n".join(md) + "\n")
    atomic_write_text(out / "intention_eval.json", json.dumps(result, indent=1) + "\n")
    print("\n".join(md))
    return 0
