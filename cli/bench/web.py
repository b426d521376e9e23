"""`certfed bench web`: how fast the web desk renders its pages for an office of N people.

Starts PostgreSQL (the server DATABASE_URL names, or one from `pgserver`), a registry, a
residence agency that also pays (`N` beneficiaries, registered in bulk) and a paying office that
asks it for assistance, as real processes, then the agency's web desk (`certfed web serve`).
Two operators sign in over HTTP as a browser does (the form's CSRF token, the session cookie): a
clerk who also reviews, and an administrator. They fetch each main page in turn, `rounds` times:
home, the lists (a few pages each), beneficiaries' pages, the inbox and a request's page, the
review queue, a certification's page and the held attestations, and the administrator's pages.
Every answer must be 200. Prints each page's p50 and p95, the overall p95, pages/s and the peak
resident memory of the web desk and the node; asserts nothing about time.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TypeVar

import grpc

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.federation import bench_registry_settings, bench_settings
from cli.bench.kit import bench_workdir, peak_rss_mb, postgres_server, resident_id
from cli.demo import screen_capture_png
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp

AGENCY = NodeSpec(
    "bench-web-qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office")
)
ASKING = NodeSpec("bench-web-lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
LISTS = ("due", "warning", "suspended", "overpayments", "duplicates", "report")
ADMIN_PAGES = ("operators", "outbox", "federation", "audit")
BATCH = 1_000
# Certifications waiting for review, and inbound requests, that the queues show.
OWN_CERTIFICATIONS = 20
Request = TypeVar("Request")
Response = TypeVar("Response")
CSRF_FIELD = re.compile(
    r'<input[^>]*name="csrf_token"[^>]*value="([^"]*)"|'
    r'<input[^>]*value="([^"]*)"[^>]*name="csrf_token"'
)


@dataclass(frozen=True)
class WebBenchFigures:
    beneficiaries: int
    requests: int
    database: str
    fetches: int
    seconds: float
    rate_per_s: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    # The web desk process, and the node behind it, at their peaks.
    peak_rss_mib: float
    node_peak_rss_mib: float
    page_p50_ms: dict[str, float] = field(default_factory=dict)
    page_p95_ms: dict[str, float] = field(default_factory=dict)
    # GET /healthz in the same rounds: the HTTP round trip without a page or a node call.
    floor_p50_ms: float = 0.0
    floor_p95_ms: float = 0.0

    def as_rows(self) -> list[tuple[str, str]]:
        rows = [
            ("database", self.database),
            ("pages fetched", f"{self.fetches:,} in {self.seconds:.1f} s"),
            ("pages/s", f"{self.rate_per_s:,.1f}"),
            ("p50 / p95 / max, all pages", f"{self.p50_ms} / {self.p95_ms} / {self.max_ms} ms"),
            ("floor: /healthz p50 / p95", f"{self.floor_p50_ms} / {self.floor_p95_ms} ms"),
        ]
        rows.extend(
            (f"  {page}: p50 / p95", f"{self.page_p50_ms[page]} / {self.page_p95_ms[page]} ms")
            for page in self.page_p95_ms
        )
        rows += [
            ("peak RSS, web desk", f"{self.peak_rss_mib:.0f} MiB"),
            ("peak RSS, node", f"{self.node_peak_rss_mib:.0f} MiB"),
        ]
        return rows


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    position = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[position]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class PageFetchError(RuntimeError):
    """The web desk answered a page with something other than 200."""


class SignedInClient:
    """One operator's browser, reduced to what the measurement needs: a kept-alive HTTP
    connection, the cookies the desk sets, and the CSRF token of the form it posts."""

    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self._connection = http.client.HTTPConnection(
            parsed.hostname or "127.0.0.1", parsed.port, timeout=30
        )
        self._cookies: dict[str, str] = {}

    def _send(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, str, http.client.HTTPMessage]:
        headers = {"Accept-Language": "zh-CN"}
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self._connection.request(method, path, body=body, headers=headers)
        answer = self._connection.getresponse()
        text = answer.read().decode("utf-8", errors="replace")
        for header in answer.headers.get_all("Set-Cookie") or ():
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                self._cookies[name] = morsel.value
        return answer.status, text, answer.headers

    def get(self, path: str) -> str:
        status, text, _ = self._send("GET", path)
        if status != 200:
            raise PageFetchError(f"GET {path} answered {status}")
        return text

    def sign_in(self, user_name: str, password: str) -> None:
        page = self.get("/sign-in")
        match = CSRF_FIELD.search(page)
        if match is None:
            raise PageFetchError("the sign-in form carries no csrf_token")
        form = urllib.parse.urlencode(
            {
                "user_name": user_name,
                "password": password,
                "csrf_token": match.group(1) or match.group(2),
            }
        ).encode()
        status, _, headers = self._send("POST", "/sign-in", form)
        location = headers.get("Location", "")
        if status not in (302, 303) or location.endswith("/sign-in"):
            raise PageFetchError(f"signing in as {user_name} answered {status}")

    def close(self) -> None:
        self._connection.close()


def _call_honouring_retry_after(call: Callable[[Request], Response], request: Request) -> Response:
    """`call(request)`, waited and sent again as often as the node answers RESOURCE_EXHAUSTED
    with a retry-after-ms trailer."""
    while True:
        try:
            return call(request)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            retry_after_ms = 1000
            for entry in error.trailing_metadata() or ():
                value = str(entry.value, "ascii") if isinstance(entry.value, bytes) else entry.value
                if entry.key == "retry-after-ms" and value.isdigit():
                    retry_after_ms = int(value)
            time.sleep(retry_after_ms / 1000)


def _register(desk: DeskClient, count: int, region: str, residence: str) -> list[str]:
    """`count` people paid here, in bulk; their validities spread from three months ago to
    ten months ahead, so that every list has people on it."""
    today = datetime.now(UTC)
    registered: list[str] = []
    for start in range(0, count, BATCH):
        rows = [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=resident_id(region, date(1935, 1, 1), index),
                    full_name="陈大文",
                ),
                residence_region=residence,
                valid_until=to_timestamp(today + timedelta(days=index % 390 - 90)),
                monthly_amount_fen=200_000 + index % 50 * 1_000,
            )
            for index in range(start, min(count, start + BATCH))
        ]
        response = _call_honouring_retry_after(
            desk.stub.UpsertBeneficiaries,
            desk_pb2.UpsertBeneficiariesRequest(beneficiaries=rows),
        )
        registered.extend(result.beneficiary_id for result in response.results)
    return registered


def _ask_for_assistance(local: LocalFederation, count: int) -> list[str]:
    """The paying office asks the agency to certify `count` of its people living in Qingdao;
    the request ids, once all have reached the agency."""
    deadline = to_timestamp(datetime.now(UTC) + timedelta(days=30))
    with local.desk(ASKING.node_id) as desk:
        asked = [
            _call_honouring_retry_after(
                desk.stub.RequestCertification,
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    deadline=deadline,
                    acceptable_methods=[common_pb2.CERTIFICATION_METHOD_ON_SITE],
                ),
            ).request.request_id
            for beneficiary_id in _register(desk, count, "620102", "370202")
        ]
    local.await_outbox_drained(ASKING.node_id, timeout_s=120)
    return asked


def _await_inbox(local: LocalFederation, request_ids: list[str]) -> None:
    inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
    wanted = request_ids[:1]
    with local.desk(AGENCY.node_id) as desk:
        wait_until(
            lambda: all(
                r in {a.request_id for a in desk.stub.ListAssistanceRequests(inbound).requests}
                for r in wanted
            ),
            60,
            "the assistance requests to reach the agency",
        )


def _own_certifications(local: LocalFederation, beneficiaries: list[str]) -> list[str]:
    """Certifications of the agency's own people, recorded with a photo and awaiting review."""
    recorded = []
    with local.desk(AGENCY.node_id) as desk:
        for shade, beneficiary_id in enumerate(beneficiaries[:OWN_CERTIFICATIONS]):
            photo = desk.stub.UploadEvidence(
                desk_pb2.UploadEvidenceRequest(
                    media_type="image/png", content=screen_capture_png(shade)
                )
            )
            certification = desk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[photo.evidence.sha256],
                )
            ).certification
            recorded.append(certification.certification_id)
    with local.desk(AGENCY.node_id, "admin") as admin:
        # The daily cycle moves people from due to warning and suspended.
        admin.stub.RunCycle(desk_pb2.RunCycleRequest())
    return recorded


Page = tuple[SignedInClient, Callable[[int], str]]


def _pages(
    clerk: SignedInClient,
    admin: SignedInClient,
    beneficiaries: list[str],
    requests: list[str],
    certifications: list[str],
) -> dict[str, Page]:
    """Each main page: the operator who opens it, and its path on the `i`th fetch."""

    def nth(items: list[str], i: int) -> str:
        return items[(i * 7919) % len(items)]

    def listed(name: str) -> Callable[[int], str]:
        return lambda i: f"/lists/{name}?page={i % 3 + 1}"

    def fixed(path: str) -> Callable[[int], str]:
        return lambda _i: path

    pages: dict[str, Page] = {"home": (clerk, fixed("/"))}
    for name in LISTS:
        pages[f"lists/{name}"] = (clerk, listed(name))
    pages["beneficiary"] = (clerk, lambda i: f"/beneficiaries/{nth(beneficiaries, i)}")
    pages["inbox"] = (clerk, lambda i: f"/inbox?page={i % 2 + 1}")
    if requests:
        pages["request"] = (clerk, lambda i: f"/requests/{nth(requests, i)}")
    pages["reviews"] = (clerk, fixed("/reviews"))
    pages["certification"] = (clerk, lambda i: f"/certifications/{nth(certifications, i)}")
    pages["held"] = (clerk, fixed("/held"))
    for name in ADMIN_PAGES:
        pages[f"admin/{name}"] = (admin, fixed(f"/admin/{name}"))
    return pages


def bench_web(
    *, beneficiaries: int, requests: int, rounds: int, workdir: Path | None
) -> WebBenchFigures:
    with (
        bench_workdir(workdir, "web") as folder,
        postgres_server(folder / "pgdata", f"certfed_bench_web_{os.getpid()}") as postgres,
        LocalFederation(
            folder / "federation",
            database_url_for=postgres.create_database,
            log_level="warning",
            sign_in=True,
        ) as federation,
    ):
        federation.registry_settings.update(bench_registry_settings())
        federation.start_registry()
        agency = federation.add_node(AGENCY, settings=bench_settings())
        federation.add_node(ASKING, settings=bench_settings())
        with federation.desk(AGENCY.node_id) as desk:
            people = _register(desk, beneficiaries, "370202", "370202")
        asked = _ask_for_assistance(federation, requests) if requests else []
        certifications = _own_certifications(federation, people)
        if asked:
            _await_inbox(federation, asked)
        url = federation.start_web_desk(AGENCY.node_id)
        clerk, admin = SignedInClient(url), SignedInClient(url)
        try:
            clerk.sign_in("senior", agency.passwords["senior"])
            admin.sign_in("admin", agency.passwords["admin"])
            pages = _pages(clerk, admin, people, asked, certifications)
            timings: dict[str, list[float]] = {name: [] for name in pages}
            floor: list[float] = []
            seconds = 0.0
            for i in range(rounds):
                for name, (client, path) in pages.items():
                    before = time.perf_counter()
                    client.get(path(i))
                    timings[name].append(time.perf_counter() - before)
                seconds += sum(timings[name][-1] for name in pages)
                before = time.perf_counter()
                clerk.get("/healthz")
                floor.append(time.perf_counter() - before)
        finally:
            clerk.close()
            admin.close()
        web, node = agency.web_process, agency.process
        everything = sorted(t for page in timings.values() for t in page)
        return WebBenchFigures(
            beneficiaries=beneficiaries,
            requests=len(asked),
            database=f"PostgreSQL ({postgres.source})",
            fetches=len(everything),
            seconds=round(seconds, 2),
            rate_per_s=round(len(everything) / seconds, 1) if seconds else 0.0,
            p50_ms=_ms(_percentile(everything, 0.50)),
            p95_ms=_ms(_percentile(everything, 0.95)),
            max_ms=_ms(everything[-1]) if everything else 0.0,
            peak_rss_mib=round(peak_rss_mb(web.pid), 1) if web is not None else 0.0,
            node_peak_rss_mib=round(peak_rss_mb(node.pid), 1) if node is not None else 0.0,
            page_p50_ms={n: _ms(_percentile(sorted(t), 0.50)) for n, t in timings.items()},
            page_p95_ms={n: _ms(_percentile(sorted(t), 0.95)) for n, t in timings.items()},
            floor_p50_ms=_ms(_percentile(sorted(floor), 0.50)),
            floor_p95_ms=_ms(_percentile(sorted(floor), 0.95)),
        )
