"""Which environment variables ``relay/settings.py`` reads, found in its source (for the tests
that hold the settings, ``.env.example``, the docs and the deploy manifests to one another).

A variable is read where a reader (``get``, ``env.required``, ``duration``, ``integer``) is
called with its name, directly or through a helper of ``relay/settings.py`` that is given the
name (``_intervals(env, "RELAY_POLL_INTERVAL", ...)``).
"""

from __future__ import annotations

import ast
import inspect

import relay.settings

READERS = {"get", "required", "duration", "integer"}
SETTINGS_SOURCE = ast.parse(inspect.getsource(relay.settings))
_FUNCTIONS = {node.name: node for node in SETTINGS_SOURCE.body if isinstance(node, ast.FunctionDef)}


def readers_in(
    node: ast.AST, seen: frozenset[str] = frozenset(), bound: dict[str, str] | None = None
) -> set[str]:
    """Variables read in ``node``: by a reader or in a helper of ``relay/settings.py`` that
    ``node`` calls (``bound``: the helper's parameters that the call gave a string)."""
    names: set[str] = set()
    bound = bound or {}
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        reader = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = call.args[0] if call.args else None
        if reader in READERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        elif reader in READERS and isinstance(first, ast.Name) and first.id in bound:
            names.add(bound[first.id])
        elif isinstance(func, ast.Name) and func.id in _FUNCTIONS and func.id not in seen:
            helper = _FUNCTIONS[func.id]
            given = {
                param.arg: arg.value
                for param, arg in zip(helper.args.args, call.args, strict=False)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            }
            names |= readers_in(helper, seen | {func.id}, given)
    return names


def settings_env_names() -> set[str]:
    """Every variable ``Settings.from_env`` reads, anywhere in ``relay/settings.py``."""
    return readers_in(SETTINGS_SOURCE)
