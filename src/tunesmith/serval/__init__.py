"""SERVAL: an LLM and a small vertical model teach each other a task without expert labels.

``tunesmith serval CONFIG`` runs :func:`tunesmith.serval.loop.run`: the LLM annotates the
records with soft labels (:mod:`.softlabel`), a vertical model learns from the confident ones
(:mod:`.noisy`, :mod:`.vertical`), its confident predictions back-tune the LLM through the SFT
recipe (:mod:`.backtune`), and the loop repeats; :mod:`.report` writes the per-iteration table.
This package sits beside ``board``: it uses train, evaluate, infer and data; only the CLI
imports it.
"""
