"""Face recognition from a certification app or kiosk: the provider's signed results, verified
and sent to the paying office's node (RecordFaceRecognitions, under the feed account bound to
the provider).

Results arrive two ways, in one format: the provider POSTs each result to an HTTPS callback
(`CallbackServer`), or the office pulls a batch file from the provider, one result per line
(`import_batch_file`). Either way a result is a signed envelope, a JSON object

    {"payload": "<base64 of the result's JSON bytes>", "signature": "<base64>"}

where the signature is over the payload bytes exactly as sent, with the key the office
configured for the provider (`ProviderConfig`): Ed25519 (RFC 8032; the office holds the
provider's public key) or HMAC-SHA256 (RFC 2104; a secret both hold). The payload is

    {"provider": "...", "reference": "...", "signed_at": "2026-12-03T08:15:00+08:00",
     "identity_type": "resident_id", "identity_number": "...",
     "observed_at": "2026-12-03T08:14:31+08:00", "liveness_score": 97.5, "match_score": 91.2,
     "helper_relation": ""}

Promises:

- Nothing unverified reaches the node: a result without a signature is refused as unsigned, one
  whose signature does not verify under the configured key (or names another provider) as
  forged, one signed longer ago than the configured maximum age (or in the future) as stale.
- A replay is refused as replayed: the node keeps each (provider, reference) once and answers a
  second one DUPLICATE, however long after; nothing changes.
- The identity number is only sent to the node: never logged, never in an error, a rejects file
  or an HTTP answer. Errors name the field and the line, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from adapters.desk_batches import send_batch
from adapters.errors import MappingError
from adapters.mapping_files import read_beside, read_settings
from certfed.v1 import common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.errors import CertfedError, InvalidInputError, UnavailableError
from federation.timestamps import to_timestamp

log = structlog.get_logger("certfed.face_recognition")

# The callback's path, and the largest body it reads (one result is well under 4 KiB).
CALLBACK_PATH = "/v1/face-recognition/results"
MAX_ENVELOPE_BYTES = 16 * 1024
# A batch file's results are sent this many at a time.
DEFAULT_BATCH_SIZE = 200
IDENTITY_TYPES = {
    "resident_id": common_pb2.IDENTITY_TYPE_RESIDENT_ID,
    "hkid": common_pb2.IDENTITY_TYPE_HKID,
    "macau_bir": common_pb2.IDENTITY_TYPE_MACAU_BIR,
    "passport": common_pb2.IDENTITY_TYPE_PASSPORT,
}
_PAYLOAD_KEYS = frozenset(
    {
        "provider",
        "reference",
        "signed_at",
        "identity_type",
        "identity_number",
        "observed_at",
        "liveness_score",
        "match_score",
        "helper_relation",
    }
)


class SignatureAlgorithm(StrEnum):
    ED25519 = "ed25519"
    HMAC_SHA256 = "hmac-sha256"


class ResultRefusedError(CertfedError):
    """A result the adapter will not send; `reason` is the short name the callback answers."""

    reason = "malformed"
    http_status = 400


class UnsignedResultError(ResultRefusedError):
    reason = "unsigned"
    http_status = 401


class ForgedResultError(ResultRefusedError):
    reason = "forged"
    http_status = 401


class StaleResultError(ResultRefusedError):
    reason = "stale"
    http_status = 422


class MalformedResultError(ResultRefusedError):
    reason = "malformed"
    http_status = 400


@dataclass(frozen=True)
class ProviderConfig:
    """One provider, as the office configures it (a TOML file, `load_provider_config`)."""

    # The source name the node's feed account for this provider is bound to.
    provider: str
    algorithm: SignatureAlgorithm
    # Ed25519: the provider's public key; HMAC-SHA256: the shared secret.
    key: bytes
    # How long after the provider signed a result the adapter still takes it: a callback is
    # sent at once, a batch file is pulled later.
    callback_max_age: timedelta = timedelta(minutes=10)
    batch_max_age: timedelta = timedelta(days=2)
    # Tolerated clock difference with the provider for `signed_at` in the future.
    clock_skew: timedelta = timedelta(minutes=2)

    def verify(self, payload: bytes, signature: bytes) -> None:
        """Raise ForgedResultError unless `signature` is the provider's over `payload`."""
        if self.algorithm is SignatureAlgorithm.HMAC_SHA256:
            expected = hmac.new(self.key, payload, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, signature):
                raise ForgedResultError(
                    "the signature does not verify with the provider's HMAC-SHA256 key"
                )
            return
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(signature, payload)
        except InvalidSignature:
            raise ForgedResultError(
                "the signature does not verify with the provider's Ed25519 key"
            ) from None


def load_provider_config(path: Path) -> ProviderConfig:
    """A provider's settings: `provider`, `algorithm`, `key_file` (relative to the file), and
    optionally `callback_max_age_s`, `batch_max_age_s`, `clock_skew_s`. Unknown settings are
    refused; errors name the setting, never the key."""
    name = path.name
    known = {
        "provider",
        "algorithm",
        "key_file",
        "callback_max_age_s",
        "batch_max_age_s",
        "clock_skew_s",
    }
    raw = read_settings(path, known, "a provider setting")
    provider = raw.get("provider")
    if not isinstance(provider, str) or not provider.strip() or len(provider) > 64:
        raise MappingError(f"{name}: provider", "must be the provider's source name (1-64)")
    try:
        algorithm = SignatureAlgorithm(str(raw.get("algorithm")))
    except ValueError:
        raise MappingError(
            f"{name}: algorithm", f"must be one of {', '.join(a.value for a in SignatureAlgorithm)}"
        ) from None
    key_file = raw.get("key_file")
    if not isinstance(key_file, str) or not key_file:
        raise MappingError(f"{name}: key_file", "must name the provider's key file")
    key_bytes = read_beside(path, key_file, "key_file")
    key = _provider_key(algorithm, key_bytes, f"{name}: key_file")
    ages: dict[str, timedelta] = {}
    for setting, default in (
        ("callback_max_age_s", 600),
        ("batch_max_age_s", 172_800),
        ("clock_skew_s", 120),
    ):
        value = raw.get(setting, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2_592_000:
            raise MappingError(f"{name}: {setting}", "must be whole seconds, up to 30 days")
        ages[setting] = timedelta(seconds=value)
    return ProviderConfig(
        provider=provider.strip(),
        algorithm=algorithm,
        key=key,
        callback_max_age=ages["callback_max_age_s"],
        batch_max_age=ages["batch_max_age_s"],
        clock_skew=ages["clock_skew_s"],
    )


def _provider_key(algorithm: SignatureAlgorithm, data: bytes, setting: str) -> bytes:
    if algorithm is SignatureAlgorithm.HMAC_SHA256:
        secret = data.strip()
        if len(secret) < 32:
            raise MappingError(setting, "an HMAC-SHA256 secret must be at least 32 bytes")
        return secret
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = load_pem_public_key(data)
        except ValueError:
            raise MappingError(setting, "is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise MappingError(setting, "is not an Ed25519 public key")
        return key.public_bytes_raw()
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except binascii.Error:
        raise MappingError(setting, "must be a PEM or base64 Ed25519 public key") from None
    if len(raw) != 32:
        raise MappingError(setting, "an Ed25519 public key is 32 bytes")
    return raw


def verify_result(
    config: ProviderConfig, envelope: bytes, *, now: datetime, max_age: timedelta
) -> desk_pb2.FaceRecognitionResult:
    """The result an envelope carries, once its signature, provider and age are checked."""
    try:
        outer = json.loads(envelope)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedResultError("the result is not a JSON object") from None
    if not isinstance(outer, dict):
        raise MalformedResultError("the result is not a JSON object")
    signature_text = outer.get("signature")
    if not signature_text:
        raise UnsignedResultError("the result carries no signature")
    payload_text = outer.get("payload")
    if not isinstance(payload_text, str) or not isinstance(signature_text, str):
        raise MalformedResultError("payload and signature must be base64 text")
    try:
        payload = base64.b64decode(payload_text, validate=True)
        signature = base64.b64decode(signature_text, validate=True)
    except binascii.Error:
        raise MalformedResultError("payload and signature must be base64 text") from None
    config.verify(payload, signature)
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedResultError("the signed payload is not a JSON object") from None
    if not isinstance(body, dict):
        raise MalformedResultError("the signed payload is not a JSON object")
    return _result(config, body, now=now, max_age=max_age)


def _result(
    config: ProviderConfig, body: dict[str, Any], *, now: datetime, max_age: timedelta
) -> desk_pb2.FaceRecognitionResult:
    unknown = sorted(set(body) - _PAYLOAD_KEYS)
    if unknown:
        raise MalformedResultError(f"payload field {unknown[0]!r} is not one certfed reads")
    if body.get("provider") != config.provider:
        # Signed, but for another provider: a result moved from one provider's stream to
        # another's (a shared secret) must not pass.
        raise ForgedResultError(f"the result does not name the provider {config.provider!r}")
    signed_at = _moment(body, "signed_at")
    if signed_at > now + config.clock_skew:
        raise StaleResultError("signed_at is in the future; check the provider's clock")
    if now - signed_at > max_age:
        raise StaleResultError(
            f"signed more than {int(max_age.total_seconds())} s ago; too old to accept"
        )
    identity_type = IDENTITY_TYPES.get(str(body.get("identity_type")))
    if identity_type is None:
        raise MalformedResultError(f"identity_type must be one of {', '.join(IDENTITY_TYPES)}")
    reference = _text(body, "reference")
    if len(reference) > 128:
        raise MalformedResultError("reference is longer than 128 characters")
    helper = body.get("helper_relation", "")
    if not isinstance(helper, str):
        raise MalformedResultError("helper_relation must be text")
    return desk_pb2.FaceRecognitionResult(
        provider=config.provider,
        provider_reference=reference,
        identity_type=identity_type,
        identity_number=_text(body, "identity_number"),
        observed_at=to_timestamp(_moment(body, "observed_at")),
        liveness_score=_score(body, "liveness_score"),
        match_score=_score(body, "match_score"),
        helper_relation=helper.strip(),
    )


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MalformedResultError(f"{key} is missing or not text")
    return value.strip()


def _moment(body: dict[str, Any], key: str) -> datetime:
    text = _text(body, key)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedResultError(f"{key} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise MalformedResultError(f"{key} must carry its UTC offset")
    return moment.astimezone(UTC)


def _score(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedResultError(f"{key} must be a number from 0 to 100")
    if not 0 <= value <= 100:
        raise MalformedResultError(f"{key} must be a number from 0 to 100")
    return float(value)


# Where results go.


class FaceRecognitionsRefusedError(CertfedError):
    """The node refused a batch as invalid (INVALID_ARGUMENT); the message is its reason."""


class ResultRecorder(Protocol):
    def record(
        self, results: Sequence[desk_pb2.FaceRecognitionResult]
    ) -> Sequence[desk_pb2.FaceRecognitionAnswer]: ...


class DeskResultRecorder:
    """RecordFaceRecognitions on the node's DeskService (the provider's feed account), retrying
    transient failures: a batch applied whose answer was lost comes back as duplicates."""

    def __init__(self, desk: DeskClient, *, attempts: int = 5, max_delay_s: float = 30.0) -> None:
        self._desk = desk
        self._attempts = attempts
        self._max_delay_s = max_delay_s

    def record(
        self, results: Sequence[desk_pb2.FaceRecognitionResult]
    ) -> Sequence[desk_pb2.FaceRecognitionAnswer]:
        response = send_batch(
            self._desk.stub.RecordFaceRecognitions,
            desk_pb2.RecordFaceRecognitionsRequest(results=results),
            name="RecordFaceRecognitions",
            refused=FaceRecognitionsRefusedError,
            attempts=self._attempts,
            max_delay_s=self._max_delay_s,
        )
        answers: Sequence[desk_pb2.FaceRecognitionAnswer] = response.answers
        return answers


def outcome_name(outcome: int) -> str:
    """ "certified" for FACE_RECOGNITION_OUTCOME_CERTIFIED; "replayed" for a duplicate."""
    if outcome == desk_pb2.FACE_RECOGNITION_OUTCOME_DUPLICATE:
        return "replayed"
    return (
        desk_pb2.FaceRecognitionOutcome.Name(desk_pb2.FaceRecognitionOutcome.ValueType(outcome))
        .removeprefix("FACE_RECOGNITION_OUTCOME_")
        .lower()
    )


# The pulled batch file.


@dataclass
class BatchSummary:
    lines: int = 0
    # Outcome name (outcome_name) to count; refused lines under "refused by the adapter".
    outcomes: dict[str, int] = field(default_factory=dict)
    rejected: int = 0

    def count(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1


def import_batch_file(
    path: Path,
    config: ProviderConfig,
    recorder: ResultRecorder,
    *,
    reject: Callable[[int, str], None],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> BatchSummary:
    """Verify each line of a provider's batch file (JSON Lines of envelopes) and send the
    verified results, `batch_size` at a time. A refused line is passed to `reject` with its
    number and reason and never stops the others; what the node answered is counted."""
    summary = BatchSummary()
    pending: list[tuple[int, desk_pb2.FaceRecognitionResult]] = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        summary.lines += 1
        try:
            result = verify_result(config, line, now=now(), max_age=config.batch_max_age)
        except ResultRefusedError as error:
            summary.rejected += 1
            reject(number, f"{error.reason}: {error}")
            continue
        pending.append((number, result))
        if len(pending) >= batch_size:
            _send(recorder, pending, summary, reject)
            pending = []
    _send(recorder, pending, summary, reject)
    return summary


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        stream = path.open("rb")
    except OSError as error:
        raise InvalidInputError(path.name, f"cannot be opened ({error.strerror})") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if len(line) > MAX_ENVELOPE_BYTES:
                raise InvalidInputError(
                    path.name, f"line {number} is longer than {MAX_ENVELOPE_BYTES} bytes"
                )
            yield number, line


def _send(
    recorder: ResultRecorder,
    pending: list[tuple[int, desk_pb2.FaceRecognitionResult]],
    summary: BatchSummary,
    reject: Callable[[int, str], None],
) -> None:
    if not pending:
        return
    answers = recorder.record([result for _, result in pending])
    if len(answers) != len(pending):
        raise CertfedError(f"the node answered {len(answers)} results for {len(pending)}")
    for (number, _), answer in zip(pending, answers, strict=True):
        name = outcome_name(answer.outcome)
        summary.count(name)
        if answer.outcome in (
            desk_pb2.FACE_RECOGNITION_OUTCOME_REFUSED,
            desk_pb2.FACE_RECOGNITION_OUTCOME_DUPLICATE,
        ):
            reject(number, f"{name}: {answer.message}")


# The HTTPS callback.

# HTTP status for each of the node's answers: 200 kept (certified, listed, or nothing to
# change), 404 not a person of this office, 409 a replay, 422 refused by the office's policy.
_HTTP_STATUS = {
    desk_pb2.FACE_RECOGNITION_OUTCOME_CERTIFIED: 200,
    desk_pb2.FACE_RECOGNITION_OUTCOME_BELOW_THRESHOLD: 200,
    desk_pb2.FACE_RECOGNITION_OUTCOME_IGNORED: 200,
    desk_pb2.FACE_RECOGNITION_OUTCOME_UNKNOWN_PERSON: 404,
    desk_pb2.FACE_RECOGNITION_OUTCOME_DUPLICATE: 409,
    desk_pb2.FACE_RECOGNITION_OUTCOME_REFUSED: 422,
}


class CallbackServer:
    """The provider's callback: `POST /v1/face-recognition/results` with one envelope as body.

    Served over TLS with the office's certificate (`tls`); plain HTTP only on a loopback address
    (a TLS-terminating proxy in front, or a test). Answers JSON {"outcome": ..., "message": ...}
    with the status of `_HTTP_STATUS`, 401 for an unsigned or forged result, 422 for a stale
    one, 400 for a malformed one, 503 when the node cannot be reached (the provider retries).
    """

    def __init__(
        self,
        config: ProviderConfig,
        recorder: ResultRecorder,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if tls is None and host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidInputError(
                "listen", "serve the callback over TLS (give a certificate) or on 127.0.0.1"
            )
        handler = _handler(config, recorder, now)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{CALLBACK_PATH}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="face-recognition-callback", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> CallbackServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


def _handler(
    config: ProviderConfig, recorder: ResultRecorder, now: Callable[[], datetime]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "certfed-face-recognition"
        sys_version = ""

        def do_POST(self) -> None:
            if self.path != CALLBACK_PATH:
                self._answer(404, "not_found", f"results go to {CALLBACK_PATH}")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._answer(411, "malformed", "send Content-Length")
                return
            if not 0 < length <= MAX_ENVELOPE_BYTES:
                self._answer(413, "malformed", f"a result is at most {MAX_ENVELOPE_BYTES} bytes")
                return
            body = self.rfile.read(length)
            try:
                result = verify_result(config, body, now=now(), max_age=config.callback_max_age)
            except ResultRefusedError as error:
                log.info("face_recognition.refused", reason=error.reason)
                self._answer(error.http_status, error.reason, str(error))
                return
            try:
                (answer,) = recorder.record([result])
            except FaceRecognitionsRefusedError as error:
                self._answer(400, "malformed", f"refused by the node: {error}")
                return
            except UnavailableError:
                self._answer(503, "unavailable", "the office's node cannot be reached; retry")
                return
            name = outcome_name(answer.outcome)
            # The provider's reference and the outcome only: never the person.
            log.info(
                "face_recognition.result",
                provider=config.provider,
                reference=result.provider_reference,
                outcome=name,
            )
            self._answer(_HTTP_STATUS.get(answer.outcome, 500), name, answer.message)

        def _answer(self, status: int, outcome: str, message: str) -> None:
            data = json.dumps({"outcome": outcome, "message": message}).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # The default writes every request line to stderr; the structured log above says
            # what matters and nothing personal.
            return

    return Handler


def signed_envelope(body: dict[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    """An envelope as a provider builds it, `sign` being its Ed25519 or HMAC-SHA256 signer
    (for tests and a provider's integration check)."""
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode("ascii"),
            "signature": base64.b64encode(sign(payload)).decode("ascii"),
        }
    ).encode("utf-8")
