"""Exceptions of agentbus, each carrying the library's stable status code.

An operation that the bus refuses raises the subclass of :class:`Error` for its code
(``AclDenied``, ``Timeout``, ``NotDeliverable``, ...); ``e.code`` is the
:class:`StatusCode` (the same number as in the C++ library, the wire protocol, logs and
metrics), ``e.detail`` the library's explanation. An agent the broker does not enrol
raises :class:`EnrolmentError` with the code saying why.
"""

from __future__ import annotations

import builtins
import enum

from . import _agentbus

StatusCode = enum.IntEnum("StatusCode", _agentbus.status_codes())
StatusCode.__doc__ = "The library's stable status codes (schemas/protocol.md; never renumbered)."


class Error(Exception):
    """A refusal or failure with a stable status code."""

    code: StatusCode
    detail: str

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = StatusCode(code)
        self.detail = detail
        super().__init__(f"{self.code.name}: {detail}" if detail else self.code.name)

    def __reduce__(self):  # pickling and copy: rebuilt from the code, not the message
        return (type(self), (int(self.code), self.detail))


class EnrolmentError(Error):
    """The broker refused to enrol the agent, or could not be reached (code ``timeout``)."""


class TpmError(Exception):
    """The TPM could not be reached or failed (``rc`` is the TSS2 response code, 0 if none)."""

    def __init__(self, message: str, rc: int = 0) -> None:
        self.rc = rc
        super().__init__(message)


class IdentityError(Exception):
    """An identity directory is missing, incomplete or not usable with the given TPM."""


class PolicyFileError(Exception):
    """A policy file is invalid: ``file`` and ``field`` say where."""

    def __init__(self, message: str, file: str = "", field: str = "") -> None:
        self.file = file
        self.field = field
        super().__init__(message)


class CryptoError(Exception):
    """OpenSSL failed for a reason that is not the input's fault."""


class SoftwareKeyWarning(UserWarning):
    """An identity key lives in software, not in a TPM: its envelopes carry assurance
    'software', which only roles that allow software accept."""


def _class_name(code_name: str) -> str:
    return "".join(part.capitalize() for part in code_name.split("_"))


# One subclass of Error per code (AclDenied, BadMac, Timeout, ...). Timeout is also a
# builtins.TimeoutError, so `except TimeoutError` catches a request that went unanswered.
_BY_CODE: dict[int, type[Error]] = {}
for _code in StatusCode:
    if _code == 0:
        continue
    _bases: tuple[type, ...] = (Error, builtins.TimeoutError) if _code.name == "timeout" else (Error,)
    _cls = type(_class_name(_code.name), _bases, {"__doc__": f"Status code {_code.value} ({_code.name})."})
    _cls.__module__ = "agentbus"
    _BY_CODE[_code.value] = _cls
    globals()[_cls.__name__] = _cls

ERROR_CLASSES = dict(_BY_CODE)


def error_for(code: int, detail: str, kind: str = "") -> Error:
    """The exception for a status code (called by the C++ module)."""
    if kind == "enrolment":
        return EnrolmentError(code, detail)
    return _BY_CODE.get(code, Error)(code, detail)


def tpm_error(message: str, rc: int) -> TpmError:
    return TpmError(message, rc)


def identity_error(message: str) -> IdentityError:
    return IdentityError(message)


def crypto_error(message: str) -> CryptoError:
    return CryptoError(message)


def policy_error(message: str, file: str, field: str) -> PolicyFileError:
    return PolicyFileError(message, file, field)
