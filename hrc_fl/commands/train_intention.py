"""``hrc-fl train-intention``: train the base intention model from the real data into a model store."""

from __future__ import annotations

import argparse

NAME = "train-intention"
HELP = ("Train the base intention model (real watch IMU windows; with --fused, COMPOSED episodes adding real "
        "hand and body samples, modality dropout) and save it as a new version in a model store.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="", help="model store folder (default: <runtime>/intention_models/base, "
                        "which seeds every workstation's empty store)")
    parser.add_argument("--version", default="", help="version name (default: next base-NNNN, a prefix "
                        "that never collides with the vNNNN versions federated learning writes)")
    parser.add_argument("--imu-only", action="store_true", help="train on the watch IMU only (no composed episodes)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--window", type=int, default=100, help="IMU window, samples at 50 Hz")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, batches and composition")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the store already holds a model that loads with this code "
                             "(used by setup, so a second setup run does not retrain)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hrc_fl.commands._intention_data import check_arguments, load_watch_windows
    from hrc_fl.intention.model import parameter_counts
    from hrc_fl.intention.model_store import ModelStore, base_store_dir
    from hrc_fl.intention.recipes import TrainSettings, train_composed, train_imu
    from hrc_fl.intention.training import Samples, evaluate
    from hrc_fl.intention.windows import make_split

    check_arguments(args)
    if args.if_missing:
        from hrc_fl.intention.model_store import ModelStoreError

        store = ModelStore(Path(args.store) if args.store else base_store_dir())
        try:
            present = store.load_latest()
        except ModelStoreError as exc:
            print(f"[setup] base intention model unusable ({exc}); training a new one")
            present = None
        if present is not None:
            print(f"[setup] base intention model {present.meta.version} present in {store.root}")
            return 0
        print("[setup] training the base intention model (real watch data + composed episodes)")
    recordings, labels, spec = load_watch_windows(args)
    train, test = make_split(recordings, spec)
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    info: dict = {"data": "seglearn watch (10 subjects), first 70 % of every recording", "window": args.window}
    if args.imu_only:
        model = train_imu(train, len(labels), args.window, settings)
        scores = evaluate(model, Samples(y=test.y, imu=test.x))
        info["test"] = {"imu": {"accuracy": round(scores.accuracy, 4), "macro_f1": round(scores.macro_f1, 4)}}
    else:
        composed = train_composed(train, test, len(labels), args.window, settings, args.seed)
        model = composed.model
        info["data"] += "; COMPOSED episodes with HandPose/BodyPose samples (pose-classification-kit)"
        info["test_composed"] = composed.by_modalities
    store = ModelStore(Path(args.store) if args.store else base_store_dir())
    version = store.save(model, labels, version=args.version or store.next_version("base-"), info=info)
    counts = parameter_counts(model)
    print(f"saved intention model {version} to {store.root} (labels {list(labels)}; shared {counts['shared']} "
          f"and personal {counts['personal']} parameters)")
    for name, metrics in (info.get("test_composed") or info["test"]).items():
        print(f"  test {name:16s} accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}")
    return 0
