"""What every triage desk page shares: the layout, labels and small parts.

Everything is built with :mod:`bot.web.html`, which escapes every value.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from bot import dataset, staff
from bot.store.models import as_utc
from bot.web.html import Markup, document, el

BAND_LABELS = {"emergency": "Emergency", "same_day": "Same day", "urgent": "Urgent", "routine": "Routine"}

OUTCOME_LABELS = {
    "engaged": "Engaged with the other service",
    "re_referred": "Referred back to us",
    "not_engaged": "Did not engage",
}

UNAVAILABLE = "The referral store cannot be reached just now. Please try again in a minute."


def refuse_page(code: str, status: int) -> web.StreamResponse:
    if code == "not_signed_in":
        return see_other("/staff/login")
    if code == "forbidden":
        return page("No access", el("p", "Your role does not give access to this page."), status=403)
    return page("Unavailable", el("p", UNAVAILABLE), status=503)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def page(
    title: str,
    body: Markup,
    who: staff.SignedIn | None = None,
    token: str = "",
    status: int = 200,
    current: str = "",
) -> web.Response:
    header = [el("a", "Skip to main content", href="#main", class_="skip")]
    if who is not None:
        links = [("/staff/queue", "Queue"), ("/staff/figures", "Audit figures")]
        header.append(
            el(
                "header",
                el("p", "Triage desk", class_="brand"),
                el(
                    "nav",
                    el(
                        "ul",
                        [
                            el(
                                "li",
                                el("a", label, href=href, aria_current="page" if href == current else None),
                            )
                            for href, label in links
                        ],
                    ),
                    aria_label="Staff pages",
                ),
                el(
                    "form",
                    el("input", type="hidden", name="form_token", value=token),
                    el("button", f"Sign out ({who.username})", type="submit"),
                    method="post",
                    action="/staff/logout",
                    class_="signout",
                ),
            )
        )
    page = document(f"{title} – Triage desk", header, el("main", el("h1", title), body, id="main"))
    return web.Response(text=page, content_type="text/html", status=status)


def field(label: str, tag: str, *children: object, id: str, **attrs: object) -> Markup:
    """A labelled form control: ``field("From", "input", id="from", name="from", type="date")``."""
    return el("p", el("label", label, for_=id), el(tag, *children, id=id, **attrs), class_="field")


def when(value: str | None) -> str:
    if not value:
        return ""
    return as_utc(dt.datetime.fromisoformat(value)).astimezone(dt.timezone.utc).strftime("%d %b %Y %H:%M UTC")


def band(band: str | None) -> Markup:
    return el("span", BAND_LABELS.get(band or "", "None"), class_=f"band band-{band or 'none'}")


def answer(value: object) -> str:
    if value is True:
        return "Yes"
    if value is False:
        return "No"
    return str(value)


def label(name: str) -> str:
    try:
        return dataset.load().get(name).label or name
    except KeyError:
        return name


def table(caption: str, headers: tuple[str, ...], rows, row_headers: bool = True, **attrs) -> Markup:
    """A data table: column headers, and (by default) each row's first cell as its header."""
    return el(
        "table",
        el("caption", caption),
        el("thead", el("tr", [el("th", h, scope="col") for h in headers])),
        el(
            "tbody",
            [
                el(
                    "tr",
                    [
                        el("th", cell, scope="row") if i == 0 and row_headers else el("td", cell)
                        for i, cell in enumerate(row)
                    ],
                )
                for row in rows
            ],
        ),
        **attrs,
    )


def form(title: str, action: str, token: str, *fields: object, button: str) -> Markup:
    """A POST form on a staff page, with its session-bound token."""
    return el(
        "form",
        el("h3", title),
        el("input", type="hidden", name="form_token", value=token),
        *fields,
        el("button", button, type="submit"),
        method="post",
        action=action,
    )
