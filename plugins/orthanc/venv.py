"""Make the project's virtualenv importable inside Orthanc's embedded Python (stdlib only).

Debian's ``orthanc-python`` 4.0 embeds the system CPython 3.11 (``sys.prefix == /usr``); it knows
nothing of the node's virtualenv. The venv is found explicitly, never guessed from ``$PATH``:

1. ``CTNODE_VENV`` in Orthanc's environment (e.g. ``Environment=CTNODE_VENV=...`` in systemd), else
2. ``"CtNode": {"Venv": "/opt/ct-ai-node/.venv"}`` in Orthanc's configuration.

Its ``site-packages`` is placed *after* the standard library (so Debian's stdlib, which the
interpreter was built against, stays first) but *before* Debian's ``dist-packages`` (Debian ships
e.g. PyYAML 6.0 and cryptography 38 there, which would otherwise shadow the venv's pinned
versions). ``.pth`` files are honoured (``site.addsitedir``), so an editable install of the project
in the venv makes the repository importable as well.

This module must import nothing outside the standard library: it runs before the venv exists on
``sys.path``.
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VENV_ENV_VAR = "CTNODE_VENV"


class VenvNotFound(RuntimeError):
    """The configured virtualenv has no site-packages for this interpreter's version."""


def configured_venv(orthanc_configuration: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    """The venv named by ``$CTNODE_VENV`` (first) or ``CtNode.Venv`` in Orthanc's configuration."""
    from_env = environ.get(VENV_ENV_VAR, "").strip()
    if from_env:
        return Path(from_env)
    section = orthanc_configuration.get("CtNode") or {}
    value = section.get("Venv") if isinstance(section, Mapping) else None
    return Path(str(value)) if value else None


def site_packages_of(venv: Path, version: tuple[int, int] | None = None) -> Path:
    """``<venv>/lib/pythonX.Y/site-packages`` for this interpreter's X.Y; raise if absent."""
    major, minor = version or sys.version_info[:2]
    candidate = venv / "lib" / f"python{major}.{minor}" / "site-packages"
    if not candidate.is_dir():
        raise VenvNotFound(
            f"{candidate} does not exist: the venv must be built with Python {major}.{minor} "
            f"(the interpreter orthanc-python embeds)"
        )
    return candidate


def is_stdlib_entry(entry: str, prefix: str) -> bool:
    """True for the interpreter's own library folders (zip, lib/pythonX.Y, lib-dynload)."""
    if not entry:
        return False
    path = entry.rstrip("/")
    lib = str(Path(prefix) / "lib")
    return path.startswith(lib + "/python") and not path.endswith(("dist-packages", "site-packages"))


def insertion_index(path: Sequence[str], prefix: str) -> int:
    """Index just after the last standard-library entry of ``path`` (0 when there is none)."""
    index = 0
    for i, entry in enumerate(path):
        if is_stdlib_entry(entry, prefix):
            index = i + 1
    return index


def place_after_stdlib(path: Sequence[str], new_entries: Sequence[str], prefix: str) -> list[str]:
    """A copy of ``path`` with ``new_entries`` (not already present) moved right after the stdlib."""
    fresh = [e for e in dict.fromkeys(new_entries) if e]
    rest = [e for e in path if e not in fresh]
    at = insertion_index(rest, prefix)
    return [*rest[:at], *fresh, *rest[at:]]


def activate_venv(venv: Path) -> Path:
    """Add ``venv``'s site-packages (and its ``.pth`` entries) after the stdlib; return it."""
    target = site_packages_of(venv)
    before = list(sys.path)
    site.addsitedir(str(target))  # appends target and whatever its .pth files name
    added = [e for e in sys.path if e not in before]
    sys.path[:] = place_after_stdlib(before, [str(target), *added], sys.prefix)
    return target


def activate_from(orthanc_configuration: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Path:
    """Find and activate the venv; raise :class:`VenvNotFound` with what to configure."""
    venv = configured_venv(orthanc_configuration, os.environ if environ is None else environ)
    if venv is None:
        raise VenvNotFound(
            f"no virtualenv configured: set {VENV_ENV_VAR} in Orthanc's environment or "
            '"CtNode": {"Venv": "/path/to/.venv"} in its configuration'
        )
    return activate_venv(venv)
