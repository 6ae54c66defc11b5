"""The data of the rule table: a :class:`Rule` (one Akida limit, its check and fix) and a
:class:`Finding` (a rule a node of the graph breaks). They refer to the graph's nodes only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from .graph import Site

__all__ = ["Rule", "Finding", "user_rows", "fix_all_first", "NOT_JUDGED"]


@dataclass(frozen=True)
class Rule:
    """One Akida limit, with its check and its fix.

    Attributes
    ----------
    id : str
        Stable identifier (``"square-kernel"``), shown in reports and tests.
    targets : tuple of str
        ``"akida2"``, ``"akida1"`` or both.
    limit : str
        The limit in words (the documentation table).
    stage : str
        Where the real toolchain refuses it: ``"export"``, ``"quantization"``,
        ``"conversion"`` or ``"mapping"``.
    status : str
        ``"fixable"`` (a local edit) or ``"unsupported"`` (no Akida
        equivalent: redesign that part or run it on the host).
    check : callable
        ``check(site, graph, target) -> str | None``: the reason, or None.
    fix : callable
        ``fix(site, graph, target) -> str``: what to change, in PyTorch terms.
    patch : callable, optional
        ``patch(site, graph, target) -> torch.nn.Module | str | None``: a
        shape-preserving stand-in for the module (or ``"identity"`` /
        ``"relu6"`` / ``"drop-add"`` for functional operations) that lets the
        toolchain check the rest of the model. ``None`` when the fix changes
        shapes: the toolchain then stops at this operation.
    """

    id: str
    targets: tuple
    limit: str
    stage: str
    status: str
    check: Callable
    fix: Callable
    patch: Callable | None = None

    def applies(self, target: str) -> bool:
        return target in self.targets


@dataclass
class Finding:
    """A rule that an operation of the model violates."""

    rule: Rule
    site: Site
    reason: str
    fix: str

    @property
    def status(self) -> str:
        return self.rule.status

    @property
    def stage(self) -> str:
        return self.rule.stage


#: How a row the rule table passed begins when the toolchain stopped elsewhere before
#: judging it; "... stopped at <module> (<stage>) ..." follows.
NOT_JUDGED = "no rule is broken here; not judged by the toolchain, which stopped at "

_SEVERITY = {"unsupported": 0, "fixable": 1, "not reached": 2, "ok": 3}


def user_rows(rows: list, graph, kinds: dict) -> list:
    """Report rows in the user's names: the rows of modules a rewrite added (``mean_gap`` and
    ``mean_flatten`` for the user's ``x.mean(-1)``, ``graph.helpers``) become one row of the
    user's op, with the most severe verdict; "stopped at" texts name the user's op too."""
    helpers = getattr(graph, "helpers", None) or {}
    if not helpers:
        return rows
    origins = getattr(graph, "origins", {})
    merged: dict = {}
    for row in rows:
        name = helpers.get(row.module, row.module)
        if name != row.module:
            origin = origins.get(name)
            kind = origin.kind if origin is not None else kinds.get(name, row.kind)
            row = dataclasses.replace(row, module=name, kind=kind)
        if row.reason.startswith(NOT_JUDGED):
            where = row.reason.split(" stopped at ", 1)[1].split(" (", 1)[0]
            user = helpers.get(where, where)
            row = dataclasses.replace(row, reason=row.reason.replace(where, user),
                                      fix=row.fix.replace(f"fix {where} ", f"fix {user} "))
        kept = merged.get(name)
        if kept is None or _SEVERITY.get(row.status, 3) < _SEVERITY.get(kept.status, 3):
            merged[name] = row
    return list(merged.values())


def fix_all_first(rows) -> list:
    """Rows the toolchain never judged say to fix *every* reported module, not only the
    one it stopped at (the rules may have flagged several in one run)."""
    issues = [r.module for r in rows if r.status in ("fixable", "unsupported")]
    if len(issues) < 2:
        return rows
    shown = ", ".join(issues[:6]) + (f" and {len(issues) - 6} more" if len(issues) > 6 else "")
    return [dataclasses.replace(r, fix=f"fix {shown} and check again")
            if r.reason.startswith(NOT_JUDGED) else r for r in rows]
