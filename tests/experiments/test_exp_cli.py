"""The command line refuses bad input before any work (exit 2, the flag named, no traceback),
refuses to resume under other training settings, stops on divergence, and exits cleanly on
Ctrl-C with the resume hint."""

import json

import pytest

from prune_jax import cli
from prune_jax.experiments import limit as LIM

BAD = [
    (["limit", "--eps", "-1"], "--eps must be > 0"),
    (["limit", "--eps", "nan"], "--eps must be a finite number"),
    (["limit", "--learning-rate", "nan"], "--learning-rate must be a finite number"),
    (["limit", "--learning-rate", "0"], "--learning-rate must be > 0"),
    (["limit", "--probes", "0"], "--probes must be >= 1"),
    (["limit", "--steps", "1"], "--steps must be >= 2"),
    (["limit", "--epochs", "0"], "--epochs must be >= 1"),
    (["limit", "--l1=-1e-4"], "--l1 must be >= 0"),
    (["limit", "--tolerance", "2"], "--tolerance must be <= 1.0"),
    (["limit", "--sweep-resolution", "0"], "--sweep-resolution must be > 0"),
    (["limit", "--eps-shuffles", "0"], "--eps-shuffles must be >= 1"),
    (["sap", "--iterations", "0"], "--iterations must be >= 1"),
    (["sap", "--methods", "sap-2-1"], "--methods sap-2-1: p must satisfy"),
    (["sap", "--methods", "magic"], "--methods: unknown method 'magic'"),
    (["calibrate", "--l1-budgets", "-1"], "--l1-budgets must be >= 0"),
    (["spectrum", "--top-k", "9", "--top-steps", "8"], "--top-k 9 exceeds --top-steps 8"),
    (["calibrate", "--runs", "digits"], "--runs: 'digits' is not data set:model"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_flags_exit_2_naming_the_flag(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "names"), [
    (["limit", "--model", "foo"], ("--model", "mlp_small", "cnn1d")),
    (["limit", "--dataset", "imagenet"], ("--dataset", "digits", "mnist1d")),
    (["calibrate", "--seeds"], ("--seeds",)),
])
def test_argparse_errors_list_the_choices(argv, names, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert all(n in err for n in names)


def test_unwritable_out_and_incompatible_model(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["limit", "--out", str(blocker / "x"), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["limit", "--model", "cnn_small", "--dataset", "mnist1d", "--no-progress",
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--model cnn_small does not take --dataset mnist1d" in err


def test_resume_refuses_other_training_settings_and_reuses_the_model(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["limit", "--model", "linear", "--epochs", "2", "--l1", "1e-3", "--probes", "2",
            "--steps", "6",
            "--sweep-points", "40", "--no-progress", "--out", out]
    assert cli.main(base) == 0
    first = json.loads((tmp_path / "run" / "limit.json").read_text())
    assert "spectrum (SLQ)" in first["seconds"]
    capsys.readouterr()
    # a training setting differs: refused, naming the flag and both ways forward
    assert cli.main([*base, "--l1", "5e-5"]) == 2
    err = capsys.readouterr().err
    assert "--l1: checkpoint 0.001, now 5e-05" in err and "--overwrite" in err
    # sweep and tolerance do not touch training or the spectrum: both are reused
    assert cli.main([*base, "--sweep-points", "30", "--tolerance", "0.01"]) == 0
    again = json.loads((tmp_path / "run" / "limit.json").read_text())
    assert "spectrum (SLQ)" not in again["seconds"]
    assert again["predicted_sparsity"] == first["predicted_sparsity"]
    assert again["train_history"] == first["train_history"]
    # probes change the spectrum only: no retraining, a new spectrum
    assert cli.main([*base, "--probes", "3"]) == 0
    third = json.loads((tmp_path / "run" / "limit.json").read_text())
    assert "spectrum (SLQ)" in third["seconds"] and third["train_history"] == first[
        "train_history"]
    # --overwrite trains again under the new settings
    assert cli.main([*base, "--l1", "5e-5", "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / "limit.json").read_text())["config"]["l1"] == 5e-5


def test_spectrum_refuses_to_resume_under_other_training_settings(tmp_path, capsys):
    base = ["spectrum", "--model", "linear", "--epochs", "1", "--probes", "2", "--steps", "4",
            "--top-k", "1", "--top-steps", "4", "--no-progress", "--out", str(tmp_path / "s")]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "2"]) == 2
    assert "--epochs: checkpoint 1, now 2" in capsys.readouterr().err


def test_divergence_stops_with_exit_1(tmp_path, capsys):
    code = cli.main(["limit", "--model", "linear", "--epochs", "3", "--learning-rate", "1e30",
                     "--no-progress", "--out", str(tmp_path / "d")])
    assert code == 1
    assert "training diverged" in capsys.readouterr().err


def test_ctrl_c_prints_the_resume_hint(tmp_path, monkeypatch, capsys):
    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(LIM, "run", interrupted)
    assert cli.main(["limit", "--out", str(tmp_path / "i")]) == 130
    err = capsys.readouterr().err
    assert "Run the same command again to resume" in err and "Traceback" not in err


def test_results_go_to_stdout_and_progress_to_stderr(tmp_path, capsys):
    assert cli.main(["limit", "--model", "linear", "--epochs", "2", "--probes", "2", "--steps",
                     "6", "--sweep-points", "20", "--out", str(tmp_path / "s")]) == 0
    captured = capsys.readouterr()
    assert "predicted sparsity" in captured.out and "predicted sparsity" not in captured.err
    assert "wrote" in captured.err
