"""``tunesmith board`` driven in headless Chromium: the form from a recipe, an error at its field,
two tiny runs through the queue (curve updating, stop with a checkpoint, resume), chat with the
result and the comparison page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.board.jobs import STATE_FILE

STEPS = 28  # stop lands near step 11 on a loaded 2-core machine: room to spare


def _page(chromium: Any, url: str) -> Any:
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#recipe")
    return page


def _pick(page: Any, elem_id: str, text: str, *, add: bool = False) -> None:
    """Choose the dropdown entry that starts with ``text`` (``add``: one more, multiselect)."""
    page.click(f"#{elem_id} input")
    if not add:
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.press("Backspace")
    page.keyboard.type(text)
    page.get_by_role("option", name=text).first.click()


def _fill(page: Any, path: str, value: str) -> None:
    """Type into the form field at ``path``: the last key typed fires its input event, as when a
    user types (``fill`` alone sets the text without one)."""
    elem = path if path.startswith("src-") else f"f-{path.replace('.', '-')}"
    box = page.locator(f"#{elem}").locator("input, textarea").first
    for _ in range(5):
        box.fill(value[:-1])
        box.press_sequentially(value[-1])
        # A field in a tab shown for the first time can still receive its recipe value a
        # moment later (seen on a loaded machine: "sft-lora" + "a"): check and type again.
        page.wait_for_timeout(100)
        if box.input_value() == value:
            return
    raise AssertionError(f"{elem}: shows {box.input_value()!r}, typed {value!r}")


def _tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _wait_text(page: Any, selector: str, text: str, timeout: float = 60) -> str:
    end, shown = time.monotonic() + timeout, ""
    while time.monotonic() < end:
        shown = page.inner_text(selector) if page.locator(selector).count() else ""
        if text in shown:
            return shown
        page.wait_for_timeout(200)
    raise AssertionError(f"{selector}: {text!r} not shown in {timeout} s; shows {shown!r}")


def test_form_from_recipe_and_error_at_field(
    chromium: Any, served: Any, shots: Path, tmp_path: Path
) -> None:
    page = _page(chromium, served.url)
    _pick(page, "recipe", "sft-lora")
    _wait_text(page, "#errors", "accepts this config")
    yaml_text = page.locator("#yaml .cm-content").inner_text()
    assert yaml.safe_load(yaml_text) == yaml.safe_load(_recipe_text("sft-lora"))
    # Enums are dropdowns; the help under a field is the schema's description.
    _tab(page, "train")
    assert page.locator("#f-train-scheduler input").input_value() == "cosine"
    assert "Overrides epochs when set." in page.inner_text("#f-train-max_steps")
    page.screenshot(path=str(shots / "configure.png"))

    _fill(page, "train.lr", "-1")
    err = page.locator("#err-train-lr")
    err.wait_for(state="visible")
    assert err.inner_text().strip() == "train.lr: Input should be greater than 0"  # the CLI's line
    _fill(page, "train.max_steps", "ten")
    page.locator("#err-train-max_steps").wait_for(state="visible")
    assert page.inner_text("#err-train-max_steps").strip() == (
        "train.max_steps: Input should be a valid integer, unable to parse string as an integer "
        "(got 'ten')"
    )
    _wait_text(page, "#errors", "2 problem(s)")
    page.screenshot(path=str(shots / "configure-error.png"))

    _fill(page, "train.lr", "1e-4")
    _fill(page, "train.max_steps", "5")
    _wait_text(page, "#errors", "accepts this config")
    page.locator("#err-train-lr").wait_for(state="hidden", timeout=10_000)
    live = yaml.safe_load(page.locator("#yaml .cm-content").inner_text())
    for _ in range(20):  # the button's new file can land a moment after the text updates
        with page.expect_download() as dl:
            page.click("#download")
        saved = yaml.safe_load(Path(dl.value.path()).read_text(encoding="utf-8"))
        if saved == live:
            break
        page.wait_for_timeout(250)
    assert saved == live  # the file is the YAML shown
    expected = yaml.safe_load(_recipe_text("sft-lora"))
    expected["train"].update(lr=1e-4, max_steps=5)
    assert saved == expected

    # Data sources: a built-in set, then an entry of a LLaMA-Factory dataset_info.json.
    info = tmp_path / "lf"
    info.mkdir()
    (info / "mine.json").write_text('[{"instruction": "hi", "output": "hello"}]')
    (info / "dataset_info.json").write_text('{"mine": {"file_name": "mine.json"}}')
    _tab(page, "data")
    _pick(page, "src-path", "builtin:identity")
    page.click("#src-add")
    _wait_text(page, "#yaml", "builtin:identity")
    _fill(page, "src-info", str(info))
    entry = page.locator("#src-entry input")
    end = time.monotonic() + 20
    while entry.input_value() != "mine" and time.monotonic() < end:  # the entries were read
        page.wait_for_timeout(200)
    assert entry.input_value() == "mine"
    page.click("#src-entry-add")
    _wait_text(page, "#yaml", "from_info")
    _wait_text(page, "#errors", "accepts this config")
    tree = yaml.safe_load(page.locator("#yaml .cm-content").inner_text())
    assert tree["data"]["datasets"] == [
        {"path": "builtin:general", "format": "auto"},
        {"path": "builtin:identity"},
        {"from_info": str(info), "name": "mine"},
    ]
    page.screenshot(path=str(shots / "configure-sources.png"), full_page=True)
    page.close()


def _recipe_text(name: str) -> str:
    from tunesmith.recipes import recipe_dir

    return (recipe_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def _configure_tiny(page: Any, name: str, steps: int) -> None:
    """The sft-lora recipe cut down to a few short steps on one thread."""
    _tab(page, "Configure")
    _pick(page, "recipe", "sft-lora")
    _wait_text(page, "#errors", "accepts this config")
    _tab(page, "data")
    _fill(page, "data.max_length", "256")
    _fill(page, "data.val_size", "0")
    _tab(page, "train")
    for path, value in {
        "train.max_steps": str(steps),
        "train.batch_size": "4",
        "train.threads": "1",
        "train.log_every": "1",
    }.items():
        _fill(page, path, value)
    _pick(page, "f-train-precision", "fp32")  # no bf16 speed measurement before step 1
    _tab(page, "output")
    _fill(page, "output.name", name)
    _wait_text(page, "#errors", "accepts this config")


def _state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))


def _wait_state(run_dir: Path, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (run_dir / STATE_FILE).is_file() and _state(run_dir)["state"] in states:
            return _state(run_dir)
        time.sleep(0.2)
    raise AssertionError(f"{run_dir}: not {states} in {timeout} s: {_state(run_dir)}")


@pytest.mark.slow
def test_launch_watch_stop_resume_chat_compare(chromium: Any, served: Any, shots: Path) -> None:
    runs = served.board.runs
    run_a, run_b = runs / "tiny-a", runs / "tiny-b"
    page = _page(chromium, served.url)
    _configure_tiny(page, "tiny-a", STEPS)
    page.click("#preview")
    page.locator("#sample-0").wait_for(state="visible", timeout=60_000)
    assert "trained" in page.inner_text("#sample-0")  # the legend of the highlighted tokens
    assert "builtin:general" in page.inner_text("#mix-report")
    page.screenshot(path=str(shots / "configure-preview.png"), full_page=True)

    page.click("#launch")
    _wait_text(page, "#launch-msg", "queued tunesmith train for runs/tiny-a")
    # The same form cut to 3 steps under another name: one job at a time, tiny-b waits.
    _tab(page, "Configure")
    _tab(page, "train")
    _fill(page, "train.max_steps", "3")
    _tab(page, "output")
    _fill(page, "output.name", "tiny-b")
    _wait_text(page, "#errors", "accepts this config")
    page.click("#launch")
    _wait_text(page, "#launch-msg", "queued tunesmith train for runs/tiny-b")
    assert _state(run_b)["state"] == "queued"
    assert _state(run_a)["state"] in ("queued", "running")

    # Another browser tab on the same board opens on the running job and sees the same queue.
    other = _page(chromium, served.url)
    _tab(other, "Run")
    _wait_text(other, "#queue", "queued: train runs/tiny-b")
    assert other.locator("#run-pick input").input_value() == "runs/tiny-a"
    other.close()
    _pick(page, "run-pick", "runs/tiny-a")

    # The loss curve grows while tiny-a trains (the page polls metrics.jsonl); tiny-b waits.
    seen: list[int] = []
    queue_shown = set()
    end = time.monotonic() + 120
    while time.monotonic() < end and (len(seen) < 2 or seen[-1] < 3):
        el = page.locator("#curves .ts-curves")
        n = int(el.get_attribute("data-points") or 0) if el.count() else 0
        if n and (not seen or n != seen[-1]):
            seen.append(n)
        queue_shown.add(page.inner_text("#queue"))
        page.wait_for_timeout(100)
    assert 3 <= seen[-1] < STEPS and len(seen) >= 2 and seen == sorted(seen), seen
    assert any("queued: train runs/tiny-b" in q for q in queue_shown), queue_shown
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    # Stop: SIGINT, the loop saves a checkpoint and exits; tiny-b then takes its turn.
    page.click("#stop")
    stopped = _wait_state(run_a, ("stopped", "done", "failed"))
    assert stopped["state"] == "stopped", stopped
    stopped_at = json.loads((run_a / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert stopped_at < STEPS
    assert list((run_a / "checkpoints").glob("*"))
    _wait_text(page, "#run-status", "train stopped", timeout=30)
    page.click("#resume")
    _wait_text(page, "#action-msg", "resume queued")
    assert _wait_state(run_b, ("done", "failed"))["state"] == "done"
    # Export tiny-b while tiny-a resumes: queued behind it, it runs during the chat below.
    _pick(page, "run-pick", "runs/tiny-b")
    page.click("#export")
    _wait_text(page, "#action-msg", "queued tunesmith export to runs/tiny-b-export")
    assert _state(run_b)["kind"] == "export"
    _pick(page, "run-pick", "runs/tiny-a")
    assert _wait_state(run_a, ("done", "failed"), timeout=180)["state"] == "done"
    log_a = (run_a / "board.log").read_text(encoding="utf-8")
    assert f"step {STEPS}/{STEPS}" in log_a and "--resume" in log_a
    steps = [
        json.loads(line)["step"] for line in (run_a / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, STEPS + 1))  # resumed where it stopped, nothing twice
    _wait_text(page, "#run-status", "train done", timeout=30)
    assert page.locator("#curves .ts-curves").get_attribute("data-points") == str(STEPS)

    # A reloaded page reads the state back from the run directory.
    page.reload()
    page.wait_for_selector("#recipe")
    _tab(page, "Run")
    _pick(page, "run-pick", "runs/tiny-a")
    _wait_text(page, "#run-status", f"train done, step {STEPS}/{STEPS}", timeout=30)
    page.screenshot(path=str(shots / "run-done.png"), full_page=True)

    # Chat with the result: the answer streams through the engine with the run's template.
    _tab(page, "Chat")
    _pick(page, "chat-run", "runs/tiny-a")
    for elem_id, value in (("max-new", "12"), ("temperature", "1")):
        page.locator(f"#{elem_id} input[type=number]").fill(value)
        page.locator(f"#{elem_id} input[type=number]").press("Enter")
    page.locator("#chat-seed input").fill("1")
    page.locator("#chat-seed input").press("Enter")
    page.locator("#chat-msg textarea").fill("Hello, who are you?")
    page.click("#chat-send")
    _wait_text(page, "#chat-note", "template:", timeout=60)
    # Sampled with a seed, so the engine gives this very answer again here.
    expected = " ".join(_sampled_answer(run_a, "Hello, who are you?", 12, seed=1).split())
    assert expected
    bot = page.locator("#chatbot .bot").last
    end, shown = time.monotonic() + 60, ""
    while time.monotonic() < end and shown != expected:
        page.wait_for_timeout(200)
        shown = " ".join(bot.inner_text().split())
    assert shown == expected
    page.screenshot(path=str(shots / "chat.png"), full_page=True)

    # The comparison report of both runs, inline.
    _tab(page, "Compare")
    page.click("#cmp-refresh")
    _pick(page, "cmp-runs", "runs/tiny-a")
    _pick(page, "cmp-runs", "runs/tiny-b", add=True)
    page.click("#cmp-go")
    _wait_text(page, "#cmp-msg", "report.html", timeout=120)
    frame = page.frame_locator("#cmp-frame")
    assert frame.locator("h1").inner_text() == "Comparison of 2 runs"
    assert (runs / "compare" / "report.html").is_file()
    page.screenshot(path=str(shots / "compare.png"), full_page=True)

    # Export (queued above): the same `tunesmith export` as the terminal.
    exported = _wait_state(run_b, ("done", "failed"), timeout=120)
    assert (exported["kind"], exported["state"]) == ("export", "done"), exported
    assert (runs / "tiny-b-export" / "model.safetensors").is_file()
    assert "wrote merged model to" in (run_b / "board-export.log").read_text(encoding="utf-8")
    page.close()


def _sampled_answer(run: Path, prompt: str, tokens: int, seed: int) -> str:
    from tunesmith.infer.engine import Engine, GenParams

    engine = Engine.load(str(run), threads=1)
    try:
        system = engine.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        params = GenParams(max_new_tokens=tokens, temperature=1.0, seed=seed)
        return engine.generate([messages], params)[0]
    finally:
        engine.close()
