"""HTML built so that escaping cannot be forgotten.

Every string that is not already :class:`Markup` is escaped when it goes into
an element or an attribute. Pages are built only from :func:`el`, so a name,
an answer or a reason with ``<script>`` in it is shown as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Markup(str):
    """HTML that is already safe: made by this module, never from input."""


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def el(tag: str, /, *children: object, **attrs: object) -> Markup:
    """``el("a", "text", href="/x", class_="y", aria_current="page")``.

    Attribute names lose a trailing underscore and turn ``_`` into ``-``.
    ``True`` writes a bare attribute; ``None`` and ``False`` leave it out.
    Children may be strings, Markup, None (skipped) or iterables of these.
    """
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{escape(value)}"')
    opening = f"<{' '.join(parts)}>"
    if tag in _VOID:
        return Markup(opening)
    return Markup(f"{opening}{join(children)}</{tag}>")


def join(children: Iterable[object]) -> Markup:
    out = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, (list, tuple)) or (not isinstance(child, str) and isinstance(child, Iterable)):
            out.append(join(child))
        else:
            out.append(escape(child))
    return Markup("".join(out))


def document(title: str, *body: object, lang: str = "en") -> Markup:
    head = el(
        "head",
        Markup('<meta charset="utf-8">'),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("title", title),
        el("link", rel="stylesheet", href="/static/staff.css"),
    )
    return Markup("<!doctype html>" + el("html", head, el("body", *body), lang=lang))


_VOID = {"meta", "link", "input", "br", "hr", "img"}
