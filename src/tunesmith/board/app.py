"""The Gradio app of ``tunesmith board``: Configure, Run, Chat and Compare tabs.

A thin layer: the form is the schema (``form.py``), validation is ``load_config``, jobs are the
CLI verbs (``jobs.py``), the run view reads run directories (``runview.py``), chat streams
through ``tunesmith.infer.Engine`` and the comparison is ``tunesmith compare``'s page.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from tunesmith.board import form, runview
from tunesmith.board.chat import chat_turn
from tunesmith.board.preview import preview as data_preview
from tunesmith.board.sources import add_source, builtin_sources, info_entries
from tunesmith.board.state import Board, recipe_descriptions
from tunesmith.errors import TunesmithError

CSS = """
.ts-field-error,.ts-field-error *{color:#b00020 !important;font-weight:600}
.ts-field-error p{margin:0 0 0 8px}
.ts-invalid{border:2px solid #b00020 !important;border-radius:6px}
.ts-progress{height:14px;background:#eee;border-radius:7px;overflow:hidden;margin:6px 0}
.ts-bar{height:100%;background:#2ca02c}
.ts-curves{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}
.ts-curves figure{margin:0;border:1px solid #eee}.ts-curves svg{width:100%;height:auto}
"""


def _error_md(lines: list[str]) -> str:
    return "\n\n".join(html.escape(line) for line in lines)


def build(board: Board) -> Any:
    """The ``gr.Blocks`` app over ``board``."""
    import gradio as gr

    recipes = recipe_descriptions()
    specs = board.specs  # in widget order: by tab, then by nested group
    widgets: list[Any] = []
    error_boxes: list[Any] = []

    def widget(spec: form.FieldSpec) -> Any:
        label = spec.name + (" (required)" if spec.required else "")
        common = {"label": label, "elem_id": "f-" + spec.path.replace(".", "-")}
        value = form.widget_value(spec, spec.default)
        if spec.kind == "bool":
            return gr.Checkbox(value=value, info=spec.help or None, **common)
        if spec.kind == "choice":
            choices = ([form.NONE] if spec.optional else []) + list(spec.choices)
            return gr.Dropdown(choices=choices, value=value, info=spec.help or None, **common)
        if spec.kind == "multi":
            return gr.CheckboxGroup(
                choices=list(spec.choices), value=value, info=spec.help or None, **common
            )
        if spec.kind == "yaml":
            gr.Markdown(f"**{label}** — {spec.help} (YAML)" if spec.help else f"**{label}** (YAML)")
            return gr.Code(
                value=value, language="yaml", lines=3, show_label=False, elem_id=common["elem_id"]
            )
        return gr.Textbox(value=value, info=spec.help or None, lines=1, **common)

    def source_picker() -> tuple[dict[str, Any], Any, Any]:
        """Rows that append a source to data.datasets: a file / builtin, or an info entry."""
        with gr.Group():
            with gr.Row():
                src = gr.Dropdown(
                    choices=builtin_sources(),
                    allow_custom_value=True,
                    value=None,
                    label="add a source: a data file (path) or builtin:NAME",
                    elem_id="src-path",
                    scale=4,
                )
                add_src = gr.Button("Add source", elem_id="src-add", scale=1)
            with gr.Row():
                info = gr.Textbox(
                    label="or a dataset_info.json (file or folder)", elem_id="src-info", scale=2
                )
                entry = gr.Dropdown(label="entry", choices=[], elem_id="src-entry", scale=2)
                add_entry = gr.Button("Add entry", elem_id="src-entry-add", scale=1)
            note = gr.Markdown(elem_id="src-note")
        return {"src": src, "add_src": add_src, "info": info, "entry": entry}, note, add_entry

    with gr.Blocks(title="tunesmith board") as app:
        given = gr.State(set())
        gr.Markdown("# tunesmith board")
        with gr.Tabs(selected="configure") as tabs:
            # ---- Configure ----
            with gr.Tab("Configure", id="configure"):
                with gr.Row():
                    recipe = gr.Dropdown(
                        choices=[(f"{n} — {d}", n) for n, d in recipes.items()],
                        value=None,
                        label="Start from a recipe",
                        elem_id="recipe",
                        scale=4,
                    )
                    validate_btn = gr.Button("Validate", elem_id="validate", scale=1)
                errors = gr.Markdown(elem_id="errors")
                with gr.Row():
                    with gr.Column(scale=3), gr.Tabs():
                        for section in dict.fromkeys(s.section for s in specs):
                            in_tab = [s for s in specs if s.section == section]
                            with gr.Tab(section, id=f"sec-{section}"):
                                if section == "data":
                                    picker = source_picker()
                                groups: dict[str, list[form.FieldSpec]] = {}
                                for s in in_tab:
                                    groups.setdefault(s.group, []).append(s)
                                for group, members in groups.items():
                                    ctx = (
                                        gr.Accordion(
                                            f"{group} — {form.section_doc(group)}", open=False
                                        )
                                        if group != section
                                        else gr.Group()
                                    )
                                    with ctx:
                                        for s in members:
                                            widgets.append(widget(s))
                                            error_boxes.append(
                                                gr.Markdown(
                                                    visible=False,
                                                    elem_classes=["ts-field-error"],
                                                    elem_id="err-" + s.path.replace(".", "-"),
                                                )
                                            )
                    with gr.Column(scale=2):
                        yaml_view = gr.Code(
                            label="config YAML (live)",
                            language="yaml",
                            interactive=False,
                            elem_id="yaml",
                        )
                        download = gr.DownloadButton("Download YAML", elem_id="download")
                        with gr.Row():
                            preview_btn = gr.Button("Preview data", elem_id="preview")
                            launch_btn = gr.Button(
                                "Launch training", variant="primary", elem_id="launch"
                            )
                        launch_msg = gr.Markdown(elem_id="launch-msg")

                with gr.Accordion("Data preview and mix report", open=True):
                    samples = [
                        gr.HighlightedText(
                            label=f"sample {i + 1}",
                            color_map={"trained": "green"},
                            show_legend=True,
                            combine_adjacent=True,
                            elem_id=f"sample-{i}",
                            visible=False,
                        )
                        for i in range(3)
                    ]
                    mix_report = gr.Markdown(elem_id="mix-report")

            # ---- Run ----
            with gr.Tab("Run", id="run"):
                with gr.Row():
                    run_pick = gr.Dropdown(
                        label="run directory",
                        choices=[],
                        elem_id="run-pick",
                        scale=4,
                        allow_custom_value=True,
                    )
                    refresh_btn = gr.Button("Refresh list", scale=1)
                status = gr.Markdown(elem_id="run-status")
                progress = gr.HTML(elem_id="run-progress")
                with gr.Row():
                    stop_btn = gr.Button("Stop (checkpoint)", variant="stop", elem_id="stop")
                    resume_btn = gr.Button("Resume", elem_id="resume")
                    eval_btn = gr.Button("Evaluate (tunesmith eval)", elem_id="eval")
                    export_dir = gr.Textbox(
                        label="export to", placeholder="default: <run>-export", scale=2
                    )
                    export_btn = gr.Button("Export (tunesmith export)", elem_id="export")
                action_msg = gr.Markdown(elem_id="action-msg")
                curves = gr.HTML(elem_id="curves")
                log = gr.Textbox(
                    label="log (tail)",
                    lines=12,
                    max_lines=12,
                    interactive=False,
                    elem_id="log",
                    autoscroll=True,
                )
                queue_md = gr.Markdown(elem_id="queue")
                timer = gr.Timer(1.0)
                seen = gr.State(None)

            # ---- Chat ----
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    chat_run = gr.Dropdown(
                        label="run (or model path / builtin:...)",
                        choices=[],
                        allow_custom_value=True,
                        elem_id="chat-run",
                        scale=3,
                    )
                    chat_refresh = gr.Button("Refresh list", scale=1, elem_id="chat-refresh")
                with gr.Row():
                    chat_adapters = gr.Textbox(
                        label="adapters (tunesmith chat --adapter): run directories or adapter "
                        "folders, one a line, NAME=PATH to name one; the first answers by default",
                        lines=1,
                        elem_id="chat-adapters",
                        scale=3,
                    )
                    chat_use = gr.Textbox(
                        label="answer with (an adapter's name or the base's; empty: the default)",
                        elem_id="chat-use",
                        scale=1,
                    )
                with gr.Row():
                    with gr.Column(scale=3):
                        # The model's text as is (no Markdown): what was trained is what shows.
                        chatbot = gr.Chatbot(
                            label="chat", elem_id="chatbot", height=360, render_markdown=False
                        )
                        with gr.Row():
                            msg = gr.Textbox(label="message", scale=4, elem_id="chat-msg")
                            send = gr.Button(
                                "Send", variant="primary", scale=1, elem_id="chat-send"
                            )
                        clear = gr.Button("Clear")
                    with gr.Column(scale=1):
                        system = gr.Textbox(
                            label="system prompt", placeholder="default: the run's", lines=2
                        )
                        max_new = gr.Slider(
                            1, 1024, value=64, step=1, label="max new tokens", elem_id="max-new"
                        )
                        temperature = gr.Slider(
                            0,
                            2,
                            value=0.0,
                            step=0.05,
                            label="temperature (0: greedy)",
                            elem_id="temperature",
                        )
                        top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="top p")
                        seed = gr.Number(
                            label="sampling seed (empty: random)",
                            value=None,
                            precision=0,
                            elem_id="chat-seed",
                        )
                        image = gr.Image(label="image (vision-language runs)", type="filepath")
                chat_note = gr.Markdown(elem_id="chat-note")

            # ---- Compare ----
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    cmp_runs = gr.Dropdown(
                        label="runs", choices=[], multiselect=True, elem_id="cmp-runs", scale=4
                    )
                    cmp_refresh = gr.Button("Refresh list", scale=1, elem_id="cmp-refresh")
                cmp_prompts = gr.Textbox(
                    label="prompts (one a line; empty: the runs' eval.prompts)", lines=2
                )
                cmp_btn = gr.Button("Compare", variant="primary", elem_id="cmp-go")
                cmp_msg = gr.Markdown(elem_id="cmp-msg")
                cmp_html = gr.HTML(elem_id="cmp-report")

        # ---- Configure events
        def show(values: list[Any], given_paths: set[str]) -> list[Any]:
            tree, lines = board.check(values, given_paths)
            placed, _ = form.errors_by_field(lines, specs)  # all lines are in the summary
            head = (
                "**valid**: `tunesmith validate` accepts this config"
                if not lines
                else f"**{len(lines)} problem(s)** (also shown at their fields):\n\n"
                + "\n\n".join(f"- `{x}`" for x in lines)
            )
            now = {path: _error_md(found) for path, found in placed.items()}
            updates: list[Any] = [form.dump_tree(tree), str(board.write_yaml(tree)), head]
            for s in specs:
                text = now.get(s.path)
                updates.append(gr.update(value=text or "", visible=text is not None))
            return updates

        check_outputs = [yaml_view, download, errors, *error_boxes]
        check_inputs = [*widgets, given]

        def on_edit(*args: Any) -> list[Any]:
            *values, given_paths = args
            return show(list(values), given_paths)

        def on_recipe(name: str | None) -> list[Any]:
            if not name:
                return [gr.skip()] * (len(widgets) + 1)
            values, given_paths = form.values_from_tree(board.recipe_tree(name), specs)
            return [*values, given_paths]

        pick, pick_note, add_entry_btn = picker
        datasets_box = widgets[[s.path for s in specs].index("data.datasets")]

        def list_entries(path: str) -> list[Any]:
            if not path.strip():
                return [gr.update(choices=[], value=None), ""]
            try:
                names = info_entries(path)
            except TunesmithError as exc:
                return [gr.update(choices=[], value=None), f"error: {html.escape(str(exc))}"]
            return [gr.update(choices=names, value=names[0] if names else None), ""]

        def append(current: str, source: dict[str, Any]) -> list[Any]:
            try:
                return [add_source(current, source), f"added `{source}`"]
            except TunesmithError as exc:
                return [gr.skip(), f"error: {html.escape(str(exc))}"]

        pick["info"].change(list_entries, [pick["info"]], [pick["entry"], pick_note])
        pick["add_src"].click(
            lambda cur, path: (
                append(cur, {"path": path})
                if path
                else [gr.skip(), "pick a file or builtin:NAME first"]
            ),
            [datasets_box, pick["src"]],
            [datasets_box, pick_note],
        ).then(on_edit, check_inputs, check_outputs)
        add_entry_btn.click(
            lambda cur, path, name: (
                append(cur, {"from_info": path, "name": name})
                if path and name
                else [gr.skip(), "give a dataset_info.json and pick an entry first"]
            ),
            [datasets_box, pick["info"], pick["entry"]],
            [datasets_box, pick_note],
        ).then(on_edit, check_inputs, check_outputs)

        recipe.input(on_recipe, [recipe], [*widgets, given]).then(
            on_edit, check_inputs, check_outputs
        )
        gr.on(
            [w.input for w in widgets],
            on_edit,
            check_inputs,
            check_outputs,
            trigger_mode="always_last",
        )
        validate_btn.click(on_edit, check_inputs, check_outputs)

        def on_preview(*args: Any) -> list[Any]:
            *values, given_paths = args
            tree, lines = board.check(list(values), given_paths)
            if lines:
                hidden = [gr.update(visible=False)] * len(samples)
                return [*hidden, "Fix the config first:\n\n" + "\n".join(f"- `{x}`" for x in lines)]
            try:
                shown, report = data_preview(board.preview_file(tree), len(samples))
            except TunesmithError as exc:
                return [
                    *([gr.update(visible=False)] * len(samples)),
                    f"error: `{html.escape(str(exc))}`",
                ]
            updates = [gr.update(value=v, visible=True) for v in shown]
            updates += [gr.update(visible=False)] * (len(samples) - len(shown))
            return [*updates, report]

        preview_btn.click(on_preview, [*widgets, given], [*samples, mix_report])

        def on_launch(*args: Any) -> list[Any]:
            *values, given_paths = args
            tree, lines = board.check(list(values), given_paths)
            if lines:
                return [f"not launched: {len(lines)} problem(s), see above", gr.skip(), gr.skip()]
            try:
                run_dir = board.launch(tree)
            except TunesmithError as exc:
                return [f"error: `{html.escape(str(exc))}`", gr.skip(), gr.skip()]
            shown = board.show_path(run_dir)
            return [
                f"queued `tunesmith train` for `{shown}`",
                gr.update(choices=board.run_choices(), value=shown),
                gr.Tabs(selected="run"),
            ]

        launch_btn.click(on_launch, [*widgets, given], [launch_msg, run_pick, tabs])

        # ---- Run events
        def view(run: str | None, last: Any) -> list[Any]:
            if not run:
                return [gr.skip()] * 5 + [board.queue_text(), last]
            run_dir = board.queue.resolve(run)
            st = runview.run_status(run_dir)
            metrics = run_dir / "metrics.jsonl"
            sig = (
                run,
                st.state,
                st.step,
                metrics.stat().st_size if metrics.is_file() else -1,
                len(st.log),
            )
            if sig == last:
                return [gr.skip()] * 5 + [board.queue_text(), last]
            changed_curve = last is None or last[0] != run or last[3] != sig[3]
            return [
                st.headline(),
                runview.progress_html(st),
                runview.curve_html(run_dir) if changed_curve else gr.skip(),
                st.log,
                gr.skip(),
                board.queue_text(),
                sig,
            ]

        view_outputs = [status, progress, curves, log, action_msg, queue_md, seen]
        timer.tick(view, [run_pick, seen], view_outputs)
        run_pick.change(lambda r: view(r, None), [run_pick], view_outputs)

        def refresh(current: str | None) -> Any:
            choices = board.run_choices()
            value = current if current in choices else (choices[0] if choices else None)
            return gr.update(choices=choices, value=value)

        refresh_btn.click(refresh, [run_pick], [run_pick])

        def act(what: str, run: str | None, out: str = "") -> str:
            return board.action(what, run, out) if run else "pick a run first"

        stop_btn.click(lambda r: act("stop", r), [run_pick], [action_msg])
        resume_btn.click(lambda r: act("resume", r), [run_pick], [action_msg])
        eval_btn.click(lambda r: act("eval", r), [run_pick], [action_msg])
        export_btn.click(lambda r, o: act("export", r, o), [run_pick, export_dir], [action_msg])

        # ---- Chat events
        def finished_runs() -> Any:
            return gr.update(choices=board.run_choices())

        chat_refresh.click(finished_runs, None, [chat_run])
        cmp_refresh.click(finished_runs, None, [cmp_runs])

        def respond(*args: Any) -> Iterator[list[Any]]:
            for hist, text, note in chat_turn(board, *args):
                yield [hist, text, gr.skip() if note is None else note]

        chat_inputs = [
            chat_run,
            chat_adapters,
            chat_use,
            msg,
            chatbot,
            system,
            max_new,
            temperature,
            top_p,
            seed,
            image,
        ]
        send.click(respond, chat_inputs, [chatbot, msg, chat_note])
        msg.submit(respond, chat_inputs, [chatbot, msg, chat_note])
        clear.click(lambda: ([], ""), None, [chatbot, chat_note])

        # ---- Compare events
        def compare(runs: list[str] | None, prompts: str) -> list[Any]:
            from datetime import datetime, timezone

            from tunesmith.evaluate.compare import collect
            from tunesmith.evaluate.compare_html import write_report

            try:
                comp = collect(
                    [str(board.queue.resolve(r)) for r in runs or []],
                    prompts=[p.strip() for p in prompts.splitlines() if p.strip()],
                )
                when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                out = board.runs / "compare" / "report.html"
                files, _ = write_report(comp, out, fmt_name="html", generated=when)
            except TunesmithError as exc:
                return [f"error: `{html.escape(str(exc))}`", gr.skip()]
            page = files[0].read_text(encoding="utf-8")
            frame = (
                f'<iframe id="cmp-frame" srcdoc="{html.escape(page, quote=True)}" '
                'style="width:100%;height:900px;border:1px solid #ddd"></iframe>'
            )
            return [f"wrote `{board.show_path(files[0])}` and `{board.show_path(files[1])}`", frame]

        cmp_btn.click(compare, [cmp_runs, cmp_prompts], [cmp_msg, cmp_html])

        # ---- a (re)loaded page: the runs and the running job come from the run directories
        def on_load() -> list[Any]:
            choices = board.run_choices()
            job = board.queue.running()
            value = board.show_path(job.run_dir) if job else (choices[0] if choices else None)
            return [
                gr.update(choices=choices, value=value),
                gr.update(choices=choices),
                gr.update(choices=choices),
            ]

        app.load(on_load, None, [run_pick, chat_run, cmp_runs])
    return app
