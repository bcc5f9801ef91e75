"""Every shipped data file is what its generator in ``datagen/`` writes, byte for byte."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import datagen
import pytest

import tunesmith
from tunesmith.data.builtin import BUILTIN_DIR


def generators() -> list[ModuleType]:
    """Every ``datagen/make_*.py`` module, found on disk so a new generator is covered too."""
    names = sorted(m.name for m in pkgutil.iter_modules(datagen.__path__) if m.name[:5] == "make_")
    return [importlib.import_module(f"datagen.{name}") for name in names]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """File name -> path of the file each generator's ``main`` writes into a fresh folder."""
    written: dict[str, Path] = {}
    for module in generators():
        out = tmp_path_factory.mktemp(module.__name__.rpartition(".")[2])
        module.main(out)
        for path in sorted(out.iterdir()):
            assert path.name not in written, f"{path.name} is written by two generators"
            written[path.name] = path
    return written


def test_each_shipped_file_has_one_generator(regenerated: dict[str, Path]) -> None:
    shipped = sorted(p.name for p in BUILTIN_DIR.glob("*.jsonl"))
    assert sorted(regenerated) == shipped
    assert {"general.jsonl", "identity.jsonl", "prefs_arith.jsonl", "kto_arith.jsonl"} <= set(
        shipped
    )


def test_regenerating_gives_the_shipped_bytes(regenerated: dict[str, Path]) -> None:
    for name, path in regenerated.items():
        assert path.read_bytes() == (BUILTIN_DIR / name).read_bytes(), f"{name} differs"


def test_outputs_is_what_main_writes(regenerated: dict[str, Path]) -> None:
    for module in generators():
        for name, text in module.outputs().items():
            assert text.encode("utf-8") == regenerated[name].read_bytes(), name


def test_generators_are_not_in_the_package() -> None:
    # Only the data ships: the installed folder holds the loader and JSONL files, no generator.
    assert sorted(p.name for p in BUILTIN_DIR.glob("*.py")) == ["__init__.py"]
    assert not Path(datagen.__file__).resolve().is_relative_to(Path(tunesmith.__file__).parent)


@pytest.mark.parametrize("how", ["module", "script"])
def test_runs_as_module_and_as_script(tmp_path: Path, how: str) -> None:
    root = Path(datagen.__file__).resolve().parents[1]
    if how == "module":  # from the repository root, as the README says
        cmd, cwd = [sys.executable, "-m", "datagen.make_prefs", str(tmp_path)], root
    else:  # by path from elsewhere: the script puts the repository root on sys.path itself
        cmd, cwd = (
            [sys.executable, str(root / "datagen" / "make_prefs.py"), str(tmp_path)],
            tmp_path,
        )
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    names = [
        "arith_prompts.jsonl",
        "kto_arith.jsonl",
        "prefs_arith.jsonl",
        "prefs_arith_heldout.jsonl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        assert (tmp_path / name).read_bytes() == (BUILTIN_DIR / name).read_bytes()
    assert f"wrote {tmp_path / 'prefs_arith.jsonl'} (360 rows)" in done.stdout


def test_a_second_argument_is_refused() -> None:
    with pytest.raises(SystemExit, match=r"usage: python -m datagen.<script> \[OUT_DIR\]"):
        datagen.out_dir_arg(["a", "b"])
    assert datagen.out_dir_arg([]) == datagen.OUT_DIR == BUILTIN_DIR
    assert datagen.out_dir_arg(["x"]) == Path("x")
