"""Chat with a vision-language run: ``tunesmith chat RUN --image PATH``.

Images go through the same processor and chat template the model was trained with
(``model.multimodal.prepare_inputs``); remote URLs are refused by ``data.images.load_image``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tunesmith.data.images import IMAGE_TOKEN, load_image
from tunesmith.infer.sampling import GenParams


class ImageChat:
    """A loaded VLM answering turns about a fixed set of images."""

    def __init__(self, target: str, images: list[str], *, dtype: str = "auto") -> None:
        from tunesmith.model.multimodal import load_vlm

        self.model, self.processor = load_vlm(target, dtype=dtype)
        self.images = [load_image(p, where=f"--image {p}") for p in images]

    def answer(self, history: list[dict[str, Any]], params: GenParams) -> str:
        """Answer the conversation; the images belong to its first user turn."""
        import torch

        from tunesmith.model.multimodal import prepare_inputs

        msgs = [dict(m) for m in history]
        first = next(i for i, m in enumerate(msgs) if m["role"] == "user")
        if IMAGE_TOKEN not in msgs[first]["content"]:
            msgs[first]["content"] = IMAGE_TOKEN * len(self.images) + msgs[first]["content"]
        inputs = prepare_inputs(self.processor, msgs, self.images)
        tok = self.processor.tokenizer
        stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
        kw: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kw.update(do_sample=False)
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                eos_token_id=[s for s in stops if isinstance(s, int) and s >= 0],
                pad_token_id=tok.pad_token_id,
                **kw,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        return tok.decode(new, skip_special_tokens=True).strip()


def run_image_chat(
    target: str,
    images: list[str],
    params: GenParams,
    *,
    prompt: str | None,
    system: str | None,
    stdin: TextIO = sys.stdin,
) -> None:
    """One answer (``--prompt``) or a simple multi-turn loop about the images."""
    chat = ImageChat(target, images)
    head = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        print(chat.answer([*head, {"role": "user", "content": prompt}], params))
        return
    history: list[dict[str, Any]] = []
    print(f"{len(images)} image(s) attached; commands: /reset  /exit")
    while True:
        print("\nyou> ", end="", flush=True)
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            return
        text = line.strip()
        if text == "/reset":
            history = []
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        reply = chat.answer(head + history, params)
        print(f"bot> {reply}")
        history.append({"role": "assistant", "content": reply})
