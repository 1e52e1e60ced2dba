"""Rollouts: a feature moved from legacy to new in steps, each gated by analysis over its window.

One concern per module: :mod:`~banyan.rollout.model` (the persisted record of one rollout),
:mod:`~banyan.rollout.schedule` (what each step writes to the flag file, and the operator's
transitions), :mod:`~banyan.rollout.gates` (the step's evidence window and its verdict),
:mod:`~banyan.rollout.store` (where records live: a JSON file in the ``.banyan/`` state folder,
behind a small interface another store can implement), :mod:`~banyan.rollout.controller` (the loop
in the proxy that applies steps, judges them and aborts), :mod:`~banyan.rollout.admin` (``GET
/_proxy/rollouts``, ``POST /_proxy/rollouts/{feature}/{action}``) and :mod:`~banyan.rollout.cli`
(``banyan rollout``). The schema of the ``rollout:`` block is :mod:`banyan.proxy.flags.rollout`.
"""
