"""Record-level errors: bad input is reported with file, record and field, and loading goes on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("safeglass.data")


@dataclass(frozen=True)
class RecordError:
    file: str
    record: str  # "line 12", "row 7", "item 3" or an id
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.record}: field '{self.field}': {self.message}"


class DataError(ValueError):
    """Raised for problems that stop a whole dataset (missing file, unknown format)."""


class SkippedRecordsError(DataError):
    """Bad records were skipped and the run was asked to stop on them (``--fail-on-skipped``)."""


@dataclass
class LoadReport:
    """Collects record errors from a load; the loader keeps going after each one."""

    errors: list[RecordError] = field(default_factory=list)
    loaded: int = 0

    def add(self, file: str, record: str, field_name: str, message: str) -> None:
        err = RecordError(str(file), record, field_name, message)
        self.errors.append(err)
        log.warning("skipped bad record: %s", err)

    def extend(self, other: LoadReport) -> None:
        self.errors.extend(other.errors)
        self.loaded += other.loaded
