"""A browser without a browser: an HTTP client of the web desk that keeps its cookies (the
Secure ones too: the tests speak plain HTTP to a desk on loopback), never follows redirects by
itself, and finds the CSRF token on the page it last read."""

from __future__ import annotations

import http.client
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass
class DeskBrowser:
    base_url: str
    cookies: dict[str, str] = field(default_factory=dict)
    accept_language: str = "en"
    csrf: str = ""
    # Every URL this browser asked for or was sent to (a browser's history).
    history: list[str] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "",
    ) -> Answer:
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        headers = {"accept-language": self.accept_language}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if content_type:
            headers["content-type"] = content_type
        self.history.append(path)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        for line in answer.headers.get_all("set-cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        location = answer.header("location")
        if location:
            self.history.append(location)
        found = CSRF.search(answer.text) if answer.body else None
        if found:
            self.csrf = found.group(1)
        return answer

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(
        self, path: str, fields: Mapping[str, str | list[str]], *, csrf: bool = True
    ) -> Answer:
        """A form sent; a list is a field sent once per value, as a page's hidden fields are."""
        values = {**({"csrf_token": self.csrf} if csrf else {}), **fields}
        return self.request(
            "POST",
            path,
            urlencode(values, doseq=True).encode(),
            "application/x-www-form-urlencoded",
        )

    def post_file(
        self, path: str, fields: dict[str, str], file_field: str, filename: str, content: bytes
    ) -> Answer:
        boundary = uuid.uuid4().hex
        chunks: list[bytes] = []
        for name, value in {"csrf_token": self.csrf, **fields}.items():
            part = f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'
            chunks.append(f"{part}{value}\r\n".encode())
        chunks.append(
            f'--{boundary}\r\ncontent-disposition: form-data; name="{file_field}"; '
            f'filename="{filename}"\r\ncontent-type: application/octet-stream\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
        chunks.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST", path, b"".join(chunks), f"multipart/form-data; boundary={boundary}"
        )

    def sign_in(self, user_name: str, password: str) -> Answer:
        """Sign in as a browser does, and load the page the desk sends it to."""
        self.get("/sign-in")
        answer = self.post("/sign-in", {"user_name": user_name, "password": password})
        if answer.status == 303:
            self.get(answer.header("location"))
        return answer
