"""Creating and opening identity keys (TPM, or software flagged as such)."""

from __future__ import annotations

import os
import warnings
from typing import Optional, Union

from . import _agentbus
from ._errors import SoftwareKeyWarning

TpmLike = Union[_agentbus.Tpm, str, None]


def _tpm(tpm: TpmLike) -> Optional[_agentbus.Tpm]:
    if isinstance(tpm, str):
        return _agentbus.Tpm(tpm)
    return tpm


def _warn_software(role: str) -> None:
    warnings.warn(
        f"the {role} identity is a software key: its envelopes carry assurance 'software', "
        "which only roles that allow software accept",
        SoftwareKeyWarning,
        stacklevel=3,
    )


def create_identity(
    directory: Union[str, os.PathLike],
    role: str,
    *,
    tpm: TpmLike = None,
    software: bool = False,
    policy: Optional[_agentbus.Policy] = None,
) -> _agentbus.Identity:
    """Make a new identity for ``role`` in ``directory`` (which must not hold one).

    With ``tpm`` (a :class:`Tpm` or a TCTI string) the key is made inside that TPM and
    never leaves it. ``software=True`` instead makes a software key, with a
    :class:`SoftwareKeyWarning`. The key type is the role's suite in ``policy`` (the
    shipped default policy if none).
    """
    pol = policy if policy is not None else _agentbus.Policy.default()
    suite = pol.suite_for(role)
    if software:
        if tpm is not None:
            raise ValueError("give either tpm or software=True, not both")
        _warn_software(role)
        return _agentbus.Identity.create_software(os.fspath(directory), role, suite)
    t = _tpm(tpm)
    if t is None:
        raise ValueError("a TPM identity needs tpm= (a Tpm or a TCTI such as 'device:/dev/tpmrm0'); "
                         "software=True makes a software key instead")
    return _agentbus.Identity.create_tpm(os.fspath(directory), role, suite, t)


def open_identity(directory: Union[str, os.PathLike], *, tpm: TpmLike = None) -> _agentbus.Identity:
    """Open the identity in ``directory`` (a TPM identity needs the TPM that made it)."""
    key = _agentbus.Identity.open(os.fspath(directory), _tpm(tpm))
    if key.protection == "software":
        _warn_software(key.role)
    return key


def open_or_create_identity(
    directory: Union[str, os.PathLike],
    role: str,
    *,
    tpm: TpmLike = None,
    software: bool = False,
    policy: Optional[_agentbus.Policy] = None,
) -> _agentbus.Identity:
    """Open the identity in ``directory``, or create one for ``role`` if there is none."""
    if os.path.exists(os.path.join(os.fspath(directory), "identity.toml")):
        key = open_identity(directory, tpm=tpm)
        if key.role != role:
            raise ValueError(f"{directory} holds a {key.role} identity, not {role}")
        return key
    return create_identity(directory, role, tpm=tpm, software=software, policy=policy)
