"""Writing what a command produces (a report, an archive) to a file the user names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["write_whole"]


def write_whole(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` whole or not at all: a regular file (or a new one, its
    directories created) is written beside it and renamed over it, so an earlier file there
    is never left half-overwritten; a device, pipe, link or directory is opened as it is
    (and refused if it cannot be)."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    try:
        part.write_text(text, encoding="utf-8")
        if out.exists():
            shutil.copymode(out, part)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
