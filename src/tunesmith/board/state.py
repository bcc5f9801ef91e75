"""The board's server-side state: the job queue, the runs folder, the form's fields and the
loaded chat engine. The page holds nothing that matters: a reload reads it all back from here and
from the run directories."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.board import form, runview
from tunesmith.board.jobs import CONFIG_FILE, JobQueue
from tunesmith.errors import TunesmithError


@dataclass
class Board:
    """The board's server-side state: the job queue, the runs folder and loaded chat engines.

    Args:
        workdir: Where jobs run and relative config paths resolve.
        runs: The folder whose run directories the board lists.
        threads: torch threads for chat / compare answers in the board process.
    """

    workdir: Path
    runs: Path
    threads: int | None = None
    queue: JobQueue = field(init=False)
    specs: list[form.FieldSpec] = field(init=False)
    _engines: dict[str, Any] = field(init=False, default_factory=dict)
    _engine_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _scratch: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.queue = JobQueue(self.workdir)
        self.runs = self.queue.resolve(self.runs)
        self.specs = form.grouped(form.form_fields())
        self._scratch = Path(tempfile.mkdtemp(prefix="tunesmith-board-"))

    # -- configure -----------------------------------------------------------------------------
    def recipe_tree(self, name: str) -> dict[str, Any]:
        """A shipped recipe's YAML tree."""
        from tunesmith.config.load import read_yaml
        from tunesmith.recipes import recipe_dir

        return read_yaml(recipe_dir() / f"{name}.yaml")

    def check(self, values: list[Any], given: set[str]) -> tuple[dict[str, Any], list[str]]:
        """``(tree, error lines)`` of the form: YAML boxes that do not parse, then
        ``tunesmith validate``'s lines."""
        tree, bad = form.tree_from_values(self.specs, values, given)
        return tree, bad or form.check_tree(tree)

    def write_yaml(self, tree: dict[str, Any]) -> Path:
        """The form's YAML as a file for the download button."""
        name = str((tree.get("output") or {}).get("name") or "run")
        # A new folder each time: Gradio serves a file it has seen from its own cached copy.
        folder = Path(tempfile.mkdtemp(dir=self._scratch))
        path = folder / f"{name if '/' not in name else 'run'}.yaml"
        path.write_text(form.dump_tree(tree), encoding="utf-8")
        return path

    def run_dir_of(self, tree: dict[str, Any]) -> Path:
        """The run directory a valid tree trains into (``output.dir`` / ``runs/<name>``)."""
        from tunesmith.config.load import load_config

        return self.queue.resolve(load_config(tree=tree).output.run_dir)

    def launch(self, tree: dict[str, Any]) -> Path:
        """Queue ``tunesmith train`` on the tree; returns its run directory."""
        run_dir = self.run_dir_of(tree)
        if self.queue.busy(run_dir):
            raise TunesmithError(f"{run_dir}: a job of this run is already queued or running")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(form.dump_tree(tree), encoding="utf-8")
        self.queue.submit(
            "train", ["train", str(run_dir / CONFIG_FILE), "--no-progress"], run_dir, "board.log"
        )
        return run_dir

    def resume(self, run_dir: Path) -> str:
        """Queue ``tunesmith train CONFIG --resume`` for a run directory."""
        if self.queue.busy(run_dir):
            return "a job of this run is already queued or running"
        board_cfg = run_dir / CONFIG_FILE
        if board_cfg.is_file():
            args = ["train", str(board_cfg), "--no-progress", "--resume"]
        elif (run_dir / "config.yaml").is_file():  # a run started from the terminal
            args = [
                "train",
                str(run_dir / "config.yaml"),
                f"output.dir={run_dir}",
                "--no-progress",
                "--resume",
            ]
        else:
            return f"{run_dir}: no config to resume from"
        self.queue.submit("train", args, run_dir, "board.log")
        return "resume queued"

    def action(self, what: str, run: str, out: str = "") -> str:
        """The Run tab's buttons: ``stop``, ``resume``, ``eval`` or ``export`` on a run; the
        message the page shows."""
        run_dir = self.queue.resolve(run)
        if what == "stop":
            return self.queue.stop(run_dir)
        if what == "resume":
            return self.resume(run_dir)
        if self.queue.busy(run_dir):
            return "a job of this run is already queued or running"
        if what == "eval":
            self.queue.submit("eval", ["eval", str(run_dir)], run_dir, "board-eval.log")
            return "queued `tunesmith eval` (log: board-eval.log)"
        dest = (
            self.queue.resolve(out) if out.strip() else run_dir.with_name(run_dir.name + "-export")
        )
        self.queue.submit(
            "export", ["export", str(run_dir), "--out", str(dest)], run_dir, "board-export.log"
        )
        return f"queued `tunesmith export` to `{self.show_path(dest)}` (log: board-export.log)"

    def preview_file(self, tree: dict[str, Any]) -> Path:
        """The form's YAML written for ``data preview``'s loader."""
        path = self._scratch / "preview.yaml"
        path.write_text(form.dump_tree(tree), encoding="utf-8")
        return path

    # -- runs ------------------------------------------------------------------------------------
    def run_choices(self) -> list[str]:
        """Run directories to pick from, newest first."""
        extra = [j.run_dir for j in self.queue.jobs]
        return [self.show_path(p) for p in runview.list_runs(self.runs, extra)]

    def show_path(self, path: Path) -> str:
        """A path as the page shows it: relative to the work folder where it lies inside."""
        try:
            return str(path.relative_to(self.workdir))
        except ValueError:
            return str(path)

    def queue_text(self) -> str:
        """The queue as Markdown: the running job, then the waiting ones."""
        job = self.queue.running()
        lines = (
            [f"- running: `{job.kind}` {self.show_path(job.run_dir)}"]
            if job
            else ["- nothing running"]
        )
        lines += [f"- queued: `{j.kind}` {self.show_path(j.run_dir)}" for j in self.queue.queued()]
        return "\n".join(lines)

    # -- chat --------------------------------------------------------------------------------------
    def chat_adapters(self, text: str) -> list[str]:
        """The Chat tab's adapters box as ``tunesmith chat`` / ``serve`` ``--adapter`` values.

        One entry a line (or comma-separated): an adapter folder or a run directory (its
        ``adapter/``), optionally ``NAME=`` first. Paths resolve against the work folder.

        Raises:
            ConfigError: an entry that is neither an adapter folder nor a LoRA run directory.
        """
        from tunesmith.errors import ConfigError
        from tunesmith.runs import is_run_dir, load_run

        out: list[str] = []
        for entry in (e.strip() for e in text.replace(",", "\n").splitlines()):
            if not entry:
                continue
            name, sep, path = entry.partition("=")
            if not sep:
                name, path = "", entry
            where = self.queue.resolve(path)
            if is_run_dir(str(where)):
                adapter = load_run(str(where)).adapter
                if adapter is None:
                    raise ConfigError(
                        f"adapter {path}: this run saved full weights (model/), not an adapter; "
                        "pick it as the model instead"
                    )
                where = adapter
            elif not (where / "adapter_config.json").is_file():
                raise ConfigError(
                    f"adapter {path}: "
                    + ("no adapter_config.json in the folder" if where.is_dir() else "not found")
                    + "; give a LoRA adapter folder or a run directory with adapter/"
                )
            out.append(f"{name}{sep}{where}")
        return out

    def engine(self, run: str, adapters: str = "") -> Any:
        """The inference engine of a run or model plus adapters (loaded once, then kept).

        The first adapter is ``tunesmith chat``'s ``--adapter`` (answers use it by default), the
        others are named extras as ``tunesmith serve --adapter NAME=PATH`` loads them.
        """
        from tunesmith.infer.commands import parse_adapters
        from tunesmith.infer.engine import Engine

        specs = self.chat_adapters(adapters)
        first = specs[0].partition("=")[2] or specs[0] if specs else None
        extra = parse_adapters(specs[1:])
        local = self.queue.resolve(run)
        # builtin:... and hub ids are names, not paths under the work folder
        target = str(local) if local.exists() or run.startswith(("./", "/")) else run
        key = repr((target, specs))
        with self._engine_lock:
            if key not in self._engines:
                for old in self._engines.values():  # one model in memory at a time
                    old.close()
                self._engines.clear()
                self._engines[key] = Engine.load(
                    target,
                    adapter=first,
                    adapters=extra or None,
                    threads=self.threads,
                )
            return self._engines[key]

    def close(self) -> None:
        """Stop the queue (a running job checkpoints) and the engines."""
        self.queue.close()
        for eng in self._engines.values():
            eng.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def recipe_descriptions() -> dict[str, str]:
    """Shipped recipe -> its first comment line (what ``tunesmith recipes`` lists)."""
    from tunesmith.recipes import recipe_dir

    return {
        f.stem: f.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        for f in sorted(recipe_dir().glob("*.yaml"))
    }
