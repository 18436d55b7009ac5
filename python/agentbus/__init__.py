"""agentbus for Python: agents whose every envelope is signed by a TPM key.

::

    import agentbus
    tpm = agentbus.Tpm("swtpm:path=/run/swtpm/sock")
    key = agentbus.open_or_create_identity("keys/optimizer-1", "OPTIMIZER", tpm=tpm)
    with agentbus.Agent(identity=key, bundle="optimizer-1.bundle.toml") as agent:
        agent.subscribe("metrics/cpu", lambda m: print(m.sender, m.payload))
        agent.publish("metrics/plan", b'{"cache":"lru"}', content_type="application/json")

The C++ library (libagentbus) does the work: it releases the GIL while it waits or
works, and runs handlers with the GIL held on the agent's dispatch thread, one at a
time. docs/python.md is the reference; :mod:`agentbus.aio` is the asyncio form.
"""

from __future__ import annotations

from ._agentbus import (  # noqa: F401  (re-exported)
    Identity,
    Message,
    Policy,
    Rejection,
    Stats,
    Suite,
    Tpm,
    TpmOperation,
    library_version,
    set_log_level,
)
from ._errors import (  # noqa: F401
    ERROR_CLASSES,
    CryptoError,
    EnrolmentError,
    Error,
    IdentityError,
    PolicyFileError,
    SoftwareKeyWarning,
    StatusCode,
    TpmError,
)
from ._errors import *  # noqa: F401,F403  (AclDenied, Timeout, ... one class per code)
from ._agent import Agent, Payload  # noqa: F401
from ._identity import create_identity, open_identity, open_or_create_identity  # noqa: F401
from .aio import AsyncAgent  # noqa: F401

__version__ = library_version()
