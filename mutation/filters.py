"""Mutants run.py does not run: twins and mutants in annotations.

Twin mutants: several operators at one place whose mutants cannot behave differently.

On `"text %s" % value` or `"text" + value` (a string literal left of the operator), replacing the
operator by any of `-  /  //  **  <<  >>  &  |  ^` raises the same TypeError at the same point,
whatever the right operand is (str implements none of them, and no right operand a program here
builds defines the reflected method). Those nine mutants are twins: one of them runs, and its
outcome is counted for each of the nine. `+`, `*` and `%` stay separate mutants, since they
can succeed (`"a" + "b"`, `"a" * 3`, `"%s" % x`).

Mutants inside an annotation (`path: Path | None`, `-> str | None`) are equivalent in a module
with `from __future__ import annotations`: the annotation stays a string nobody evaluates. The
exception is a class body's annotations in a module that calls `typing.get_type_hints` (config.py
reads its dataclasses' field types that way): those are mutated and run like any other code.
"""

from __future__ import annotations

from pathlib import Path

import parso
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

ALWAYS_TYPEERROR = {
    "Sub",
    "Div",
    "FloorDiv",
    "Pow",
    "LShift",
    "RShift",
    "BitAnd",
    "BitOr",
    "BitXor",
}
_PREFIX = "core/ReplaceBinaryOperator_"


def _string_left(tree: parso.tree.Module, pos: tuple[int, int]) -> bool:
    leaf = tree.get_leaf_for_position(pos)
    if leaf is None or leaf.type != "operator" or leaf.value not in ("%", "+"):
        return False
    left = leaf.get_previous_sibling()
    return left is not None and left.type in ("string", "strings", "fstring")


def _in_annotation(leaf: parso.tree.NodeOrLeaf, hints_read: bool) -> bool:
    node, parent = leaf, leaf.parent
    while parent is not None:
        if parent.type == "tfpdef" and node is parent.children[-1]:  # `name: annotation`
            return True
        if parent.type == "funcdef" and node is parent.annotation:
            return True
        if parent.type == "annassign" and node is parent.children[1]:
            scope = parent.search_ancestor("classdef", "funcdef")
            in_class = scope is not None and scope.type == "classdef"
            return not (hints_read and in_class)
        node, parent = parent, parent.parent
    return False


def _group(operator: str) -> tuple[str, str] | None:
    """("Mod", "Sub") for core/ReplaceBinaryOperator_Mod_Sub; None for other operators."""
    if not operator.startswith(_PREFIX):
        return None
    original, _, replacement = operator.removeprefix(_PREFIX).partition("_")
    return original, replacement


def _skip(db: WorkDB, job_id: str, why: str) -> None:
    db.set_result(job_id, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))


def mark(session: Path, repo: Path) -> tuple[dict[str, str], int]:
    """Skip the mutants in annotations, and all but one of each set of twins.

    Returns ({skipped twin's job id: the job that runs for it}, how many annotation mutants)."""
    sources: dict[str, str] = {}
    trees: dict[str, parso.tree.Module] = {}
    chosen: dict[tuple[str, int, int], str] = {}
    twins: dict[str, str] = {}
    annotations = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in sorted(db.pending_work_items, key=lambda i: i.job_id):
            mutation = item.mutations[0]
            path = str(mutation.module_path)
            if path not in trees:
                sources[path] = (repo / path).read_text()
                trees[path] = parso.parse(sources[path])
            position = tuple(mutation.start_pos)
            leaf = trees[path].get_leaf_for_position(position)
            postponed = "from __future__ import annotations" in sources[path]
            hints_read = "get_type_hints" in sources[path]
            if leaf is not None and postponed and _in_annotation(leaf, hints_read):
                annotations += 1
                _skip(db, item.job_id, "in an annotation: never evaluated")
                continue
            group = _group(mutation.operator_name)
            if group is None or group[1] not in ALWAYS_TYPEERROR:
                continue
            if not _string_left(trees[path], position):
                continue
            place = (path, *mutation.start_pos)
            if place not in chosen:
                chosen[place] = item.job_id
                continue
            twins[item.job_id] = chosen[place]
            _skip(db, item.job_id, f"twin of {chosen[place]}")
    return twins, annotations
