"""Rows of strings shown as a text table (``print``) or HTML (notebooks, the site).

A leaf module: every report of the package (compatibility, mapping, lowering,
stage comparisons, int4 errors) renders through :class:`Table`.
"""

from __future__ import annotations

import html

__all__ = ["Table"]


def _text_table(records, columns, title="") -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in records)) if records else len(c) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in records]
    head = [title] if title else []
    return "\n".join([*head, line, rule, *body])


def _html_table(records, columns, title="") -> str:
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in columns) + "</tr>"
        for r in records
    )
    return (
        f'<table class="table akida-report">{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


class Table:
    """Rows of strings shown as a text table (``print``) or HTML (notebooks, the site).

    Parameters
    ----------
    records : list of dict
        One dict per row; values are converted with ``str``.
    columns : list of str, optional
        Column order (default: the keys of the first record).
    title : str, optional

    Examples
    --------
    >>> print(Table([{"layer": "conv", "bits": 4}], title="weights"))
    weights
    layer  bits
    -----  ----
    conv   4
    """

    def __init__(self, records, columns=None, title: str = ""):
        self.columns = list(columns or (records[0].keys() if records else []))
        self.records = [{c: str(r.get(c, "")) for c in self.columns} for r in records]
        self.title = title

    def __str__(self) -> str:
        return _text_table(self.records, self.columns, self.title)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return _html_table(self.records, self.columns, self.title)
