"""Mapping files, the TOML that tells an adapter which column of an office's export means what.

Feeds and rolls each ship their mappings as package data and take a path to an office's own;
both read them, and check every setting, the same way: unknown settings are refused, and every
error names the mapping and the setting, never a cell's value.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from adapters.errors import MappingError


def builtin_names(package: str) -> list[str]:
    """The mappings shipped in `package`, by name (the file name without .toml)."""
    folder = resources.files(package)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def read_mapping(name_or_path: str, package: str, kind: str) -> tuple[dict[str, Any], str]:
    """A shipped mapping by name or a mapping file by path: its TOML as a table, and its name.

    `kind` ("mapping", "roll mapping") is how errors speak of it.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise MappingError(str(path), f"cannot be read ({error.strerror})") from None
        return parse_toml(text, path.stem, kind), path.stem
    names = builtin_names(package)
    if name_or_path not in names:
        raise MappingError(
            "mapping",
            f"no {kind} named {name_or_path!r}; give a path to a .toml file or one of "
            + ", ".join(names),
        )
    text = resources.files(package).joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8")
    return parse_toml(text, name_or_path, kind), name_or_path


def parse_toml(text: str, name: str, kind: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"{kind} {name}", f"is not valid TOML ({error})") from None


def read_settings(path: Path, known: set[str], what: str) -> dict[str, Any]:
    """An adapter's settings file (TOML): its table, refusing a setting not in `known`
    ("... is not `what`"). Errors name the file and the setting, never a value."""
    name = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MappingError(name, f"cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise MappingError(name, f"is not valid TOML ({error})") from None
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MappingError(f"{name}: {unknown[0]}", f"is not {what}")
    return raw


def required_texts(raw: dict[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The settings `keys` of `raw`, each required non-blank text, stripped."""
    texts: dict[str, str] = {}
    for key in keys:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise MappingError(f"{name}: {key}", "is required text")
        texts[key] = value.strip()
    return texts


def read_beside(path: Path, relative: str, setting: str) -> bytes:
    """The file a setting of `path` names, relative to `path`'s folder (a key or a secret)."""
    try:
        return (path.parent / relative).read_bytes()
    except OSError as error:
        raise MappingError(
            f"{path.name}: {setting}", f"cannot be read ({error.strerror})"
        ) from None


def read_text_beside(path: Path, relative: str, setting: str) -> str:
    """`read_beside` as UTF-8 text, without surrounding white space."""
    try:
        return read_beside(path, relative, setting).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MappingError(f"{path.name}: {setting}", "is not UTF-8 text") from None


class MappingChecker:
    """Reads settings out of a mapping's tables; every refusal names `kind name, setting`."""

    def __init__(self, name: str, kind: str = "mapping") -> None:
        self.name = name
        self.kind = kind

    def fail(self, setting: str, problem: str) -> None:
        raise MappingError(f"{self.kind} {self.name}, {setting}", problem)

    def known(self, table: dict[str, Any], keys: set[str], prefix: str) -> None:
        unknown = sorted(set(table) - keys)
        if unknown:
            self.fail(prefix + unknown[0], "unknown setting")

    def table(self, raw: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            if required:
                self.fail(key, "is required (a [" + key + "] table)")
            return {}
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return value  # type: ignore[no-any-return]

    def text(
        self, raw: dict[str, Any], key: str, prefix: str = "", *, required: bool = False
    ) -> str:
        value = raw.get(key)
        if value is None:
            if required:
                self.fail(prefix + key, "is required")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(prefix + key, "must be a non-empty text")
        return str(value)
