"""Reading config YAML (issue 14, 15): non-UTF-8 bytes, duplicate keys, recipe-name typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError

DATA = "data:\n  datasets:\n    - path: builtin:general\n"


def one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---- issue 14: bytes that are not UTF-8 ------------------------------------------------------
def test_non_utf8_config_names_file_line_byte_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(DATA.encode() + "model:\n  name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    line = one_line(err)
    offset = len((DATA + "model:\n  name: caf").encode())
    assert line.startswith(f"{bad}:5: not UTF-8 (byte 0xe9 at offset {offset})")
    assert "save the file as UTF-8" in line


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "bom.yaml"
    cfg.write_bytes(b"\xef\xbb\xbf" + DATA.encode())
    assert load_config(cfg).data.datasets[0].path == "builtin:general"


def test_utf16_config_is_named_as_such(tmp_path: Path) -> None:
    bad = tmp_path / "u16.yaml"
    bad.write_bytes(DATA.encode("utf-16"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert one_line(err) == f"{bad}: looks like UTF-16; save the file as UTF-8"


# ---- issue 14: the same key twice ------------------------------------------------------------
def test_duplicate_section_is_refused_naming_both_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("train:\n  lr: 1.0e-4\n" + DATA + "train:\n  epochs: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert one_line(err) == (
        f"{cfg}:6: duplicate key 'train' (first at line 1); "
        "merge the two into one, or delete one of them"
    )


def test_duplicate_nested_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "dup.yaml"
    cfg.write_text(DATA + "train:\n  lr: 1.0e-4\n  epochs: 2\n  lr: 3.0e-4\n")
    with pytest.raises(
        ConfigError, match=r"dup.yaml:7: duplicate key 'train.lr' \(first at line 5\)"
    ):
        load_config(cfg)


def test_duplicate_key_inside_a_list_item_names_its_index(tmp_path: Path) -> None:
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("data:\n  datasets:\n    - path: a.jsonl\n      path: b.jsonl\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:4: duplicate key 'data.datasets.0.path'"):
        load_config(cfg)


def test_yaml_merge_keys_may_still_override(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "data:\n  datasets:\n    - &src {path: builtin:general, samples: 4}\n"
        "    - <<: *src\n      samples: 8\n"
    )
    assert [d.samples for d in load_config(path).data.datasets] == [4, 8]


def test_recipe_name_typo_suggests_the_recipe() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("sft-lroa")
    assert one_line(err) == (
        "sft-lroa: no such config file or shipped recipe; did you mean sft-lora? "
        "(`tunesmith recipes` lists them)"
    )


def test_missing_yaml_path_close_to_a_recipe_suggests_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"identty.yaml: .*did you mean identity\?"):
        load_config("identty.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory; give a YAML config file"):
        load_config(tmp_path)
