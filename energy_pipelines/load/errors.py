"""Who is to blame when PostgreSQL refuses a load: the file, or the moment.

A file's own rows can only cause data exceptions (SQLSTATE class 22) and integrity violations
(class 23): such a file is quarantined. Everything else (a cancelled statement, a lock or
statement timeout, a deadlock or serialization failure, a full disk, too many connections, a
server shutting down, a lost connection) says nothing about the file: the transaction rolls
back, the file stays in landing, and the run fails with the cause in words.
"""

from __future__ import annotations

import re

_FILE_CLASSES = ("22", "23")
_SQLSTATE_IN_TEXT = re.compile(r"SQLSTATE: ([0-9A-Z]{5})")
# Classes and codes that mean "try again later": operator intervention (57), insufficient
# resources (53), connection exceptions (08), transaction rollbacks (40), lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_CODES = ("55P03",)


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (ADBC's attribute, or the code in its message)."""
    code = getattr(error, "sqlstate", None)
    if isinstance(code, str) and len(code) == 5:
        return code
    found = _SQLSTATE_IN_TEXT.search(str(error))
    return found.group(1) if found else None


def is_database_error(error: BaseException) -> bool:
    from adbc_driver_manager import dbapi

    return isinstance(error, dbapi.Error)


def blames_the_file(error: BaseException) -> bool:
    """True when the file's content caused the error: the file is then quarantined."""
    code = sqlstate_of(error)
    if code is not None:
        return code[:2] in _FILE_CLASSES
    # A database error without a code is the connection's; any other error came from reading,
    # validating or shaping the file's rows.
    return not is_database_error(error)


def is_transient(code: str | None) -> bool:
    return code is not None and (code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES)


# Tries of one batch or key build whose session the server ends (the first and two more).
SESSION_TRIES = 3


def session_lost(error: BaseException) -> bool:
    """The server ended the session (an administrator's command, a crash, a restart) or the
    connection broke: its transaction rolled back, and the work can be done again on a new
    session. A cancelled statement (57014) is not: someone meant the load to stop."""
    code = sqlstate_of(error)
    if code is None:
        return is_database_error(error)
    return code[:2] == "08" or code in ("57P01", "57P02", "57P03")
