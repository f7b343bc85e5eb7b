"""Why a statement file is refused. A refused file changes nothing: parsers build the whole
table before anything is stored, so a bad line anywhere refuses the file."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from clearhouse.errors import ClearhouseError


class StatementCode(StrEnum):
    ENCODING = "STATEMENT_ENCODING"  # bytes that do not decode in the format's encoding
    TRUNCATED = "STATEMENT_TRUNCATED"  # a footer, summary or closing record is missing
    MISSING_COLUMN = "STATEMENT_MISSING_COLUMN"  # a column the format requires is absent
    UNKNOWN_COLUMN = "STATEMENT_UNKNOWN_COLUMN"  # a column we do not know: the layout changed
    BAD_VALUE = "STATEMENT_BAD_VALUE"  # an amount, date or code that does not parse
    TOTALS_MISMATCH = "STATEMENT_TOTALS_MISMATCH"  # the file's own totals disagree with its lines
    UNSUPPORTED = "STATEMENT_UNSUPPORTED"  # not a file of this format at all


class StatementError(ClearhouseError):
    """A typed refusal naming the file and, where one is to blame, the 1-based line."""

    code: StatementCode

    def __init__(
        self, code: StatementCode, file: str, message: str, line: int | None = None
    ) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(message, code=code.value, file=file, line=line)
        Exception.__init__(self, f"{code.value} {where}: {message}")
        self.code = code
        self.file = file
        self.line = line

    def to_dict(self) -> dict[str, Any]:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return {"code": self.code.value, "message": f"{where}: {self.message}"} | self.details
