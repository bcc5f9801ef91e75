"""CLI verbs registered by ``add_commands`` on the project's own parser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from tunesmith.errors import ConfigError
from tunesmith.infer import commands
from tunesmith.infer.commands import add_commands, parse_adapters


def subparsers(parser: argparse.ArgumentParser) -> Any:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    """The CLI's parser (with its own ``chat``), upgraded by ``add_commands``."""
    from tunesmith.cli import build_parser

    p = build_parser()
    sub = subparsers(p)
    if "export" not in sub.choices:  # until cli.py calls add_commands itself
        add_commands(sub)
    return p


def run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    args = parser.parse_args(argv)
    return args.func(args)


def test_chat_is_upgraded_in_place(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(
        [
            "chat",
            "run",
            "--bits",
            "4",
            "--stop",
            "a",
            "--stop",
            "b",
            "--top-k",
            "5",
            "--temperature",
            "0.5",
        ]
    )
    assert args.func is commands.cmd_chat
    assert (args.bits, args.stop, args.top_k, args.temperature) == (4, ["a", "b"], 5, 0.5)
    params = commands.gen_params(args)
    assert (params.stop, params.top_k, params.max_new_tokens) == (["a", "b"], 5, 256)


def test_add_commands_also_works_on_a_fresh_parser() -> None:
    p = argparse.ArgumentParser()
    add_commands(p.add_subparsers())
    args = p.parse_args(["chat", "r", "--prompt", "hi", "--bits", "8"])
    assert (args.run, args.prompt, args.bits, args.func) == ("r", "hi", 8, commands.cmd_chat)


def test_chat_prompt_prints_the_engines_answer(
    parser: argparse.ArgumentParser, tiny_qwen2: Path, capsys: pytest.CaptureFixture
) -> None:
    from tunesmith.infer.engine import Engine, GenParams

    assert (
        run(
            parser,
            ["chat", "--model", str(tiny_qwen2), "--prompt", "hello", "--max-new-tokens", "6"],
        )
        == 0
    )
    expected = Engine.load(str(tiny_qwen2)).generate(
        [[{"role": "user", "content": "hello"}]], GenParams(max_new_tokens=6)
    )[0]
    assert capsys.readouterr().out == expected + "\n"


def test_chat_without_a_model_is_a_one_line_error(parser: argparse.ArgumentParser) -> None:
    with pytest.raises(ConfigError, match="give a run directory"):
        run(parser, ["chat", "--prompt", "x"])


def test_parse_adapters() -> None:
    assert parse_adapters(["a=/x/y", "/p/q/beta"]) == {"a": "/x/y", "beta": "/p/q/beta"}
    with pytest.raises(ConfigError, match="used twice"):
        parse_adapters(["a=/x", "a=/y"])
    with pytest.raises(ConfigError, match="NAME=PATH"):
        parse_adapters(["=/x"])


def test_serve_builds_the_engine_and_limits(
    parser: argparse.ArgumentParser, tiny_qwen2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunesmith.infer.server as server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda engine, **kw: seen.update(engine=engine, **kw))
    monkeypatch.setenv(commands.API_KEY_ENV, "from-env")
    run(
        parser,
        [
            "serve",
            str(tiny_qwen2),
            "--port",
            "9999",
            "--max-tokens",
            "100",
            "--max-concurrent",
            "3",
        ],
    )
    assert seen["engine"].model_names() == [str(tiny_qwen2)]
    assert (seen["port"], seen["api_key"]) == (9999, "from-env")
    assert (seen["limits"].max_tokens, seen["limits"].default_max_tokens) == (100, 100)
    assert seen["limits"].max_concurrent == 3


def test_export_command(
    parser: argparse.ArgumentParser, tiny_qwen2: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        run(
            parser,
            ["export", str(tiny_qwen2), "--out", str(tmp_path / "copy"), "--dtype", "bfloat16"],
        )
        == 0
    )
    assert "wrote model to" in capsys.readouterr().out
    assert (tmp_path / "copy" / "Modelfile").is_file()
    with pytest.raises(ConfigError, match="--force"):
        run(parser, ["export", str(tiny_qwen2), "--out", str(tmp_path / "copy")])


def test_serve_takes_defaults_from_the_runs_serve_section(
    parser: argparse.ArgumentParser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunesmith.infer.engine as engine_mod
    import tunesmith.infer.server as server

    (tmp_path / "config.yaml").write_text(
        "serve:\n  port: 8123\n  max_concurrent: 7\n  api_key_env: MY_KEY\n"
    )
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda engine, **kw: seen.update(**kw))
    monkeypatch.setattr(engine_mod.Engine, "load", classmethod(lambda cls, *a, **k: _FakeEngine()))
    monkeypatch.setenv("MY_KEY", "k-from-section-env")
    run(parser, ["serve", str(tmp_path), "--max-concurrent", "2"])
    assert seen["port"] == 8123  # from the run's config
    assert seen["limits"].max_concurrent == 2  # the flag wins
    assert seen["api_key"] == "k-from-section-env"


def test_serve_image_flags(
    parser: argparse.ArgumentParser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunesmith.infer.engine as engine_mod
    import tunesmith.infer.server as server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda engine, **kw: seen.update(**kw))
    monkeypatch.setattr(engine_mod.Engine, "load", classmethod(lambda cls, *a, **k: _FakeEngine()))
    run(parser, ["serve", str(tmp_path)])
    assert (seen["limits"].allow_remote_images, seen["limits"].max_images) == (False, 8)
    run(parser, ["serve", str(tmp_path), "--allow-remote-images", "--max-images", "2"])
    assert (seen["limits"].allow_remote_images, seen["limits"].max_images) == (True, 2)
    with pytest.raises(ConfigError, match="--max-images -1"):
        run(parser, ["serve", str(tmp_path), "--max-images", "-1"])
    assert seen["limits"].image_dirs == ()  # no server-side files unless asked for
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path)
    run(parser, ["serve", str(tmp_path), "--image-dir", str(tmp_path / "a"), "--image-dir", "b"])
    assert seen["limits"].image_dirs == tuple(str((tmp_path / d).resolve()) for d in "ab")
    with pytest.raises(ConfigError, match=r"--image-dir .*nope: not a directory"):
        run(parser, ["serve", str(tmp_path), "--image-dir", str(tmp_path / "nope")])
    assert seen["limits"].max_image_pixels == 4096 * 4096
    run(parser, ["serve", str(tmp_path), "--max-image-pixels", "1000000"])
    assert seen["limits"].max_image_pixels == 1_000_000
    with pytest.raises(ConfigError, match="--max-image-pixels 0: must be at least 1"):
        run(parser, ["serve", str(tmp_path), "--max-image-pixels", "0"])


class _FakeEngine:
    def model_names(self) -> list[str]:
        return ["m"]


def test_run_sections_validate_flags_and_saved_values(tmp_path: Path) -> None:
    from tunesmith.config.load import run_section

    (tmp_path / "config.yaml").write_text("export:\n  dir: out/x\n  max_shard_size: 1GB\n")
    opts: Any = run_section(tmp_path, "export", {"dtype": "bfloat16", "max_shard_size": None})
    assert (opts.dir, opts.dtype, opts.max_shard_size) == ("out/x", "bfloat16", "1GB")
    with pytest.raises(ConfigError, match=r"serve\.port: .*less than or equal to 65535"):
        run_section(tmp_path, "serve", {"port": 70000})
    (tmp_path / "config.yaml").write_text("serve:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"serve\.prot: unknown key; did you mean serve\.port"):
        run_section(tmp_path, "serve", {})


def test_export_without_a_destination_says_how_to_give_one(
    parser: argparse.ArgumentParser, tiny_qwen2: Path
) -> None:
    with pytest.raises(ConfigError, match=r"--out DIR \(or set export\.dir"):
        run(parser, ["export", str(tiny_qwen2)])
