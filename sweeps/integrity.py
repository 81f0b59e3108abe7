"""Which grid points of a stored sweep are done, which files are corrupt, and moving those aside.

The rule itself is ``analysis.commits`` (shared with the loaders); this module applies it to a
``Store`` for ``lottery status`` (report) and ``lottery run`` / ``resume`` (repair).
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis import commits
from sweeps.store import Store


@dataclass(frozen=True)
class Integrity:
    """One inspection of a sweep directory.

    Attributes:
        files: Its listing and decoded commit records.
        corrupt: Path -> reason, for every part that is not valid and every record that does
            not decode.
    """

    files: commits.SweepFiles
    corrupt: dict[str, str]

    @property
    def done(self) -> set[str]:
        """Keys of the grid points whose record is complete and whose parts are all valid."""
        bad = set(self.corrupt)
        return {key for key, rec in self.files.complete().items()
                if not any(self.files.part_path(t, p) in bad
                           for t, parts in rec.parts.items() for p in parts)}


def inspect(store: Store) -> Integrity:
    """List ``store``'s tables and records and open every part's footer."""
    files = store.scan()
    corrupt = {**files.bad_records, **commits.check_parts(store.fs, files)}
    return Integrity(files=files, corrupt=corrupt)


def repair(store: Store, integrity: Integrity) -> list[str]:
    """Move every corrupt file to ``quarantine/``, so that its grid point is recomputed.

    Returns:
        One line per moved file: its path, the reason and where it went.
    """
    lines = []
    for path, reason in sorted(integrity.corrupt.items()):
        moved = store.quarantine(path)
        lines.append(f"{path}: {reason}; moved to {moved}")
    return lines
