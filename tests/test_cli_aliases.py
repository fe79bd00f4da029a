"""``hrc-fl`` aliases: an alias runs its command with the arguments it stands for, then the caller's."""

from __future__ import annotations

import pytest

import hrc_fl.commands.train_classifiers as train_classifiers
from hrc_fl.cli import aliases, build_parser, discover_commands
from hrc_fl.cli import main as cli_main


@pytest.fixture
def trained(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(train_classifiers, "train", lambda kind, **kw: calls.append((kind, kw)))
    return calls


def test_single_classifier_aliases_train_only_their_classifier_with_the_given_weights(tmp_path, trained):
    weights = tmp_path / "w" / "g.safetensors"

    assert cli_main(["train-gestures", "--out", str(tmp_path), "--weights", str(weights), "--seed", "3"]) == 0
    assert cli_main(["train-arm-signals", "--out", str(tmp_path), "--epochs", "2"]) == 0

    assert trained == [
        ("gestures", {"out": tmp_path, "weights": weights, "seed": 3, "epochs": None}),
        ("arm-signals", {"out": tmp_path, "weights": tmp_path / "arm_signal_classifier.safetensors", "seed": None,
                         "epochs": 2}),
    ]


def test_one_weights_file_for_both_classifiers_is_refused(tmp_path, trained):
    with pytest.raises(SystemExit, match="--only"):
        cli_main(["train-classifiers", "--out", str(tmp_path), "--weights", str(tmp_path / "w.safetensors")])
    assert trained == []


def test_aliases_are_listed_in_the_help_beside_the_commands(capsys):
    commands = discover_commands()
    table = aliases(commands)

    with pytest.raises(SystemExit):
        build_parser(commands).parse_args(["--help"])

    text = capsys.readouterr().out
    assert table["train-gestures"][1] == ["train-classifiers", "--only", "gestures"]
    assert all(name in text for name in [*commands, *table])
    assert not set(table) & set(commands)
