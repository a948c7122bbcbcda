"""The `vsd` entry point: what the user can fix is one line (exit 2); a bug says it is one, in one
line first, then the traceback to report (exit 1)."""

from __future__ import annotations

import vsd.evaluate.commands
from tests.fixtures.infra import REPO
from vsd.cli import main

TINY = str(REPO / "jobs/configs/annotate-tiny-cpu.yaml")


def test_a_bug_is_one_summary_line_then_the_traceback(monkeypatch, capsys):
    def run(args):
        return 1 / 0  # a bug inside a command

    monkeypatch.setattr(vsd.evaluate.commands, "run", run)  # bound by add_parser when main builds the parser
    assert main(["evaluate", "--pred", "p", "--ref", "r", "--out", "o"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "vsd: internal error: ZeroDivisionError: division by zero "
        "(a bug: please report it with the traceback below)"
    )
    assert lines[1] == "Traceback (most recent call last):"
    assert "in run" in "\n".join(lines) and lines[-1] == "ZeroDivisionError: division by zero"


def test_a_multi_line_message_keeps_the_summary_to_one_line(monkeypatch, capsys):
    def run(args):
        raise RuntimeError("\nfirst line\nsecond line")

    monkeypatch.setattr(vsd.evaluate.commands, "run", run)
    assert main(["evaluate", "--pred", "p", "--ref", "r", "--out", "o"]) == 1
    assert (
        capsys.readouterr()
        .err.splitlines()[0]
        .startswith("vsd: internal error: RuntimeError: first line (a bug")
    )


def test_user_errors_stay_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert (
        main(
            [
                "annotate",
                "--config",
                TINY,
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
                "engine.device=gpu",
            ]
        )
        == 2
    )  # ConfigError
    assert (
        capsys.readouterr().err == "vsd: error: engine.device: must be auto, cpu, cuda or cuda:N, got 'gpu'\n"
    )
    assert (
        main(
            [
                "annotate",
                "--config",
                TINY,
                "--input",
                str(tmp_path / "nowhere"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )  # VSDError (the preflight)
    err = capsys.readouterr().err
    assert (
        err.startswith(f"vsd: error: input.uri: {tmp_path / 'nowhere'}: not found") and err.count("\n") == 1
    )


def test_an_io_failure_mid_run_is_one_line_exit_1_without_a_traceback(monkeypatch, capsys):
    def run(args):
        raise OSError("When uploading part: AWS Error SLOW_DOWN during PutObject")

    import vsd.annotate.commands as commands

    monkeypatch.setattr(commands, "run", run)
    code = main(["annotate", "--input", "x", "--output", "y"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("vsd: error: I/O failure: OSError: When uploading part: AWS Error SLOW_DOWN")
