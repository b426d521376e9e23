"""Which files a desk may keep as evidence: format by first bytes, size, and the policy's list."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo import screen_capture_png
from federation.errors import InvalidInputError
from federation_node.rules.evidence import MEDIA_TYPES, check_evidence, media_type_of
from federation_node.rules.policy import load_policy

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
ALL = frozenset(MEDIA_TYPES)


@pytest.mark.parametrize(
    ("content", "media_type"),
    [(JPEG, "image/jpeg"), (screen_capture_png(), "image/png"), (PDF, "application/pdf")],
)
def test_each_accepted_format_is_recognised_by_its_first_bytes(
    content: bytes, media_type: str
) -> None:
    assert media_type_of(content) == media_type
    assert check_evidence(media_type, content, ALL, 1 << 20) == media_type


@pytest.mark.parametrize(
    ("media_type", "content", "field", "words"),
    [
        ("", JPEG, "media_type", "is required"),
        ("text/plain", b"hello", "media_type", "keeps only"),
        ("image/png", b"", "content", "is empty"),
        ("image/jpeg", screen_capture_png(0, 4, 2), "content", "looks like image/png"),
        ("image/png", b"GIF89a" + b"\x00" * 20, "content", "none of the accepted formats"),
        ("image/jpeg", JPEG + b"\x00" * 1000, "content", "at most 1000 bytes"),
    ],
)
def test_a_refused_file_names_the_field_and_says_why(
    media_type: str, content: bytes, field: str, words: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        check_evidence(media_type, content, ALL, 1000)
    assert refused.value.field == field
    assert words in refused.value.problem


def test_a_format_the_policy_leaves_out_is_refused_even_when_the_bytes_match() -> None:
    with pytest.raises(InvalidInputError, match="media_type"):
        check_evidence("application/pdf", PDF, frozenset({"image/png"}), 1 << 20)


def test_the_policy_reads_the_evidence_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[evidence]\nretention_days = 90\nmax_bytes = 65536\nmedia_types = ["image/png"]\n',
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.evidence_retention_days == 90
    assert policy.evidence_max_bytes == 65536
    assert policy.evidence_media_types == frozenset({"image/png"})


@pytest.mark.parametrize(
    "text",
    [
        "[evidence]\nretention_days = 7\n",
        "[evidence]\nmax_bytes = 0\n",
        '[evidence]\nmedia_types = ["image/gif"]\n',
        "[evidence]\nmedia_types = []\n",
    ],
)
def test_a_bad_evidence_setting_is_refused_by_name(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as refused:
        load_policy(path)
    assert refused.value.field.startswith("evidence.")
