"""The liaison desk: the Hong Kong / Macau assistance forms (在生证明协查表) as XLSX or CSV.

Uploading a form sends a request for each new row (adapters/partner_requests.py, as
`certfed forms submit` does); uploading it again later fills in each row's result. Either way
the desk answers with a page of per-row results and the form, filled in, to download. The
filled form is kept in the desk's memory for this session only.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response

from adapters.errors import FormFileError
from adapters.partner_forms import FormTable, form_file
from adapters.partner_requests import FormSummary, fill_form_results, submit_form
from adapters.web_desk.page import Page
from adapters.web_desk.security import SESSION_COOKIE, session_key

MEDIA_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True)
class FormBatch:
    filename: str
    suffix: str
    content: bytes
    summary: FormSummary
    # (spreadsheet row, request id, status, remark) of each row.
    rows: list[tuple[int, str, str, str]]
    results: bool


def forms(page: Page) -> Response:
    return page.render("forms.html", errors={})


def upload(page: Page) -> Response:
    return _handle(page, results=False)


def results(page: Page) -> Response:
    return _handle(page, results=True)


def _handle(page: Page, *, results: bool) -> Response:
    uploaded = page.upload("file") or page.upload("results_file")
    errors: dict[str, str] = {}
    if uploaded is None:
        errors["file"] = page._("Choose the form to upload")
        return page.render("forms.html", status=400, errors=errors)
    suffix = Path(uploaded.filename or "").suffix.lower()
    if suffix not in MEDIA_TYPES:
        errors["file"] = page._("The form must be an .xlsx or .csv file")
        return page.render("forms.html", status=400, errors=errors)
    content = uploaded.file.read(page.settings.form_max_bytes + 1)
    if len(content) > page.settings.form_max_bytes:
        errors["file"] = page._("The file is too large")
        return page.render("forms.html", status=400, errors=errors)
    layout = form_file(Path("form" + suffix))
    with tempfile.TemporaryDirectory(prefix="certfed-web-form-") as scratch:
        path = Path(scratch) / ("form" + suffix)
        path.write_bytes(content)
        try:
            table = layout.read(path)
        except FormFileError as error:
            errors["file"] = page._("The form cannot be read: %(problem)s", problem=error.problem)
            return page.render("forms.html", status=400, errors=errors)
        summary = fill_form_results(page.node, table) if results else submit_form(page.node, table)
        layout.write(path, table)
        filled = path.read_bytes()
    batch_id = secrets.token_urlsafe(12)
    page.state.form_batches.put(
        (_session(page), batch_id),
        FormBatch(
            filename=Path(uploaded.filename or "form").stem + "-certfed" + suffix,
            suffix=suffix,
            content=filled,
            summary=summary,
            rows=_rows(table),
            results=results,
        ),
    )
    return page.redirect(f"/forms/{batch_id}/result")


def _rows(table: FormTable) -> list[tuple[int, str, str, str]]:
    return [
        (
            number,
            table.text(index, "request_id"),
            table.text(index, "status"),
            table.text(index, "remark"),
        )
        for index, number in enumerate(table.row_numbers)
    ]


def _session(page: Page) -> str:
    return session_key(page.request.cookies.get(SESSION_COOKIE, ""))


def _batch(page: Page) -> FormBatch | None:
    found = page.state.form_batches.get((_session(page), page.request.path_params["batch"]))
    return found if isinstance(found, FormBatch) else None


def result(page: Page) -> Response:
    batch = _batch(page)
    if batch is None:
        return _gone(page)
    return page.render("form_result.html", batch=batch, batch_id=page.request.path_params["batch"])


def download(page: Page) -> Response:
    batch = _batch(page)
    if batch is None:
        return _gone(page)
    return Response(
        batch.content,
        media_type=MEDIA_TYPES[batch.suffix],
        headers={"content-disposition": f'attachment; filename="{_ascii(batch.filename)}"'},
    )


def _ascii(name: str) -> str:
    kept = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "-_."))
    return kept or "form"


def _gone(page: Page) -> Response:
    return page.render(
        "problem.html",
        status=404,
        title=page._("This form is no longer here"),
        message=page._("Upload the form again to see its results."),
        details="",
    )
