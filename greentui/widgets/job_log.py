"""A log pane that tails files (a Slurm job's stdout and stderr) by byte offset.

The job writes these files on the shared filesystem; each poll reads only the bytes added since the
last one, and only whole lines (a line still being written waits for the next poll).
"""

from __future__ import annotations

from pathlib import Path

from backend.text import safe_text

from .reflow_log import ReflowLog

MAX_READ = 256_000  # bytes per file and poll: a chatty job cannot stall the UI


class FileTail:
    """New complete lines of one file since the previous call."""

    def __init__(self, path: Path):
        self.path, self.offset = Path(path), 0

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                if self.offset == 0:  # first look: only the end of a long file
                    size = fh.seek(0, 2)
                    self.offset = max(0, size - MAX_READ)
                fh.seek(self.offset)
                data = fh.read(MAX_READ)
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[: end + 1].decode(errors="replace").splitlines()


class JobLog(ReflowLog):
    """Tails several files into one pane, each line prefixed with its file's tag (``out``/``err``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=1000, **kwargs)
        self.tails: dict[str, FileTail] = {}

    def follow(self, files: dict[str, Path]) -> None:
        for tag, path in files.items():
            if tag not in self.tails or self.tails[tag].path != Path(path):
                self.tails[tag] = FileTail(path)

    def poll(self) -> int:
        n = 0
        for tag, tail in self.tails.items():
            for line in tail.new_lines():
                self.add_line(f"{tag}│ {safe_text(line)}")  # a job's output: escapes shown, never obeyed
                n += 1
        return n
