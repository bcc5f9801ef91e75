"""``tunesmith board``'s flags: local by default, a password only from the environment."""

from __future__ import annotations

import pytest

from tunesmith.board.command import auth_from
from tunesmith.cli import build_parser, main
from tunesmith.errors import ConfigError


def test_binds_locally_unless_asked() -> None:
    args = build_parser().parse_args(["board"])
    assert (args.host, args.port, args.share, args.password_env) == ("127.0.0.1", 7860, False, None)
    args = build_parser().parse_args(["board", "--host", "0.0.0.0", "--share"])
    assert (args.host, args.share) == ("0.0.0.0", True)


def test_password_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth_from(None) is None
    monkeypatch.setenv("BOARD_PW", "s3cret")
    assert auth_from("BOARD_PW") == ("board", "s3cret")
    monkeypatch.delenv("BOARD_PW")
    with pytest.raises(ConfigError) as unset:
        auth_from("BOARD_PW")
    assert str(unset.value) == "--password-env BOARD_PW: the environment variable is unset or empty"


def test_bad_flags_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["board", "--port", "70000"]) == 2
    assert capsys.readouterr().err == "error: --port 70000: use 1..65535\n"
