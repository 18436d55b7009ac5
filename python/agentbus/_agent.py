"""agentbus.Agent: an enrolled agent (the C++ agentbus::agent) with Python handlers."""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

from . import _agentbus
from ._agentbus import Identity, Message, Policy, Rejection

log = logging.getLogger("agentbus")

Payload = Union[bytes, bytearray, memoryview, str]
MessageHandler = Callable[[Message], Any]
RequestHandler = Callable[[Message], Optional[Payload]]
RejectionHandler = Callable[[Rejection], Any]
Seconds = Union[float, int, datetime.timedelta]

# Agents still open at interpreter exit are closed first: their threads would
# otherwise wait for a GIL that is going away.
_open_agents: "weakref.WeakSet[Agent]" = weakref.WeakSet()


@atexit.register
def _close_open_agents() -> None:
    for agent in list(_open_agents):
        agent.close()
    # Agents closed from their own handlers are destroyed by threads of their own:
    # wait for those before the interpreter goes away.
    _agentbus._join_closing()


def _payload(payload: Payload) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes or str, not {type(payload).__name__}")


def _content_type(payload: Payload, content_type: Optional[str]) -> str:
    if content_type is not None:
        return content_type
    return "text/plain; charset=utf-8" if isinstance(payload, str) else "application/octet-stream"


def _duration(value: Seconds) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return value
    if value < 0:
        raise ValueError("a duration cannot be negative")
    return datetime.timedelta(seconds=value)


class HandlerAbandoned(Exception):
    """A handler's work was given up because its agent closed (agentbus.aio)."""


class _Lifecycle:
    """What closing an agent must reach: an event set when it starts closing, so that
    whatever waits on the dispatch thread's behalf (an async handler, a full stream)
    gives up and closing never waits on itself, and the hooks that end its streams.
    It refers to no handler, so the finalizer that holds it keeps no Agent alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.hooks: List[Callable[[], None]] = []

    def add_close_hook(self, hook: Callable[[], None]) -> None:
        with self.lock:
            self.hooks.append(hook)

    def remove_close_hook(self, hook: Callable[[], None]) -> None:
        with self.lock:
            if hook in self.hooks:
                self.hooks.remove(hook)

    def start_closing(self) -> None:
        self.closing.set()
        with self.lock:
            hooks, self.hooks = self.hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("agentbus: a close hook failed")


class _Handlers:
    """The Python handlers of one agent. The C++ core calls `dispatch` through a sink
    that holds this object only weakly (_make_sink)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on_message: Optional[MessageHandler] = None
        self.on_request: Optional[RequestHandler] = None
        self.on_rejected: Optional[RejectionHandler] = None
        self.topics: Dict[str, List[MessageHandler]] = {}
        self.direct_listeners: List[MessageHandler] = []
        self.errors = 0
        self.life = _Lifecycle()

    def _run(self, what: str, handler: Callable[[Any], Any], value: Any) -> Any:
        try:
            return handler(value)
        except HandlerAbandoned as e:
            log.info("agentbus: %s handler abandoned: %s", what, e)
            return None
        except Exception:  # a handler's failure is logged; the agent keeps running
            with self.lock:
                self.errors += 1
            log.exception("agentbus: %s handler raised; the agent goes on", what)
            return None

    def dispatch(self, kind: str, key: Optional[str], value: Any) -> Any:
        if kind == "topic":
            with self.lock:
                handlers = list(self.topics.get(key or "", ()))
            for h in handlers:
                self._run(f"topic {key}", h, value)
            return None
        if kind == "message":
            with self.lock:
                handlers = ([self.on_message] if self.on_message else []) + list(self.direct_listeners)
            if not handlers:
                log.warning("agentbus: direct message from %s and no on_message handler", value.sender)
            for h in handlers:
                self._run("message", h, value)
            return None
        if kind == "request":
            handler = self.on_request
            if handler is None:
                log.warning("agentbus: request from %s and no on_request handler: no reply", value.sender)
                return None
            reply = self._run("request", handler, value)
            if reply is None:
                return None
            try:
                return _payload(reply)
            except TypeError as e:
                with self.lock:
                    self.errors += 1
                log.error("agentbus: request handler's reply is unusable (%s): no reply", e)
                return None
        if kind == "rejected":
            handler = self.on_rejected
            if handler is None:
                log.warning("agentbus: %s refused at %s: %s: %s", value.recipient or value.sender or "envelope",
                            value.where, value.code_name, value.detail)
                return None
            self._run("on_rejected", handler, value)
        return None


def _make_sink(handlers: _Handlers) -> Callable[[str, Optional[str], Any], Any]:
    # The C++ core holds the sink, and Python's cycle collector cannot see through C++:
    # the sink therefore holds the handlers only weakly. Handlers that refer to their
    # Agent (a request handler that publishes) then form a cycle Python can collect,
    # and collecting the Agent closes it (weakref.finalize in Agent.__init__).
    handlers_ref = weakref.ref(handlers)

    def sink(kind: str, key: Optional[str], value: Any) -> Any:
        h = handlers_ref()
        return None if h is None else h.dispatch(kind, key, value)

    return sink


def _close_core(core: _agentbus._Agent, life: _Lifecycle) -> None:
    # Agent.close() and the collection of an Agent both end here (weakref.finalize,
    # which must hold nothing that refers to the Agent).
    life.start_closing()
    core.close()


class Agent:
    """An agent enrolled with a broker.

    Construction enrols (HELLO, CHALLENGE, PROOF, WELCOME), raising
    :class:`EnrolmentError` with the broker's code when refused. Every method may be
    called from any thread; those that wait release the GIL. Handlers run on the
    agent's dispatch thread, one at a time, with the GIL held; an exception in a
    handler is logged (logger ``agentbus``) and counted in :attr:`handler_errors`, and
    the agent goes on. Close it with :meth:`close` or a ``with`` block; an Agent that
    is garbage-collected or still open at exit is closed then.

    ``bundle`` is the file an operator issued (``agentbus-trust token create --out``):
    it gives the name, the broker's fingerprint and transport key, the token and
    usually the endpoint; explicit arguments fill what it lacks. Without a bundle,
    ``name``, ``broker`` and ``broker_fingerprint`` are needed (and
    ``broker_transport_key`` for ``tcp://``).
    """

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        identity: Identity,
        broker: Optional[str] = None,
        policy: Optional[Policy] = None,
        bundle: Union[str, os.PathLike, None] = None,
        broker_fingerprint: Optional[str] = None,
        broker_transport_key: Optional[str] = None,
        enrolment_token: Optional[str] = None,
        transport_key_file: Union[str, os.PathLike, None] = None,
        connect_timeout: Seconds = 10.0,
        session_timeout: Seconds = 5.0,
        heartbeat_interval: Seconds = 5.0,
        batch_signing: bool = False,
        insecure_trust_any_broker: bool = False,
        insecure_plain_tcp: bool = False,
    ) -> None:
        opts = _agentbus.AgentOptions()
        if bundle is not None:
            role = _agentbus.load_bundle(os.fspath(bundle), opts)
            if role != identity.role:
                raise ValueError(f"the bundle is for a {role}, the identity is a {identity.role}")
            if name is not None and name != opts.name:
                raise ValueError(f"the bundle is for '{opts.name}', not '{name}'")
        if name is not None:
            opts.name = name
        if broker is not None:
            opts.broker_endpoint = broker
        if broker_fingerprint is not None:
            opts.broker_fingerprint = broker_fingerprint
        if broker_transport_key is not None:
            opts.broker_transport_key = broker_transport_key
        if enrolment_token is not None:
            opts.enrolment_token = enrolment_token
        if transport_key_file is not None:
            opts.transport_key_file = os.fspath(transport_key_file)
        if not opts.name:
            raise ValueError("an agent needs a name (or a bundle)")
        if not opts.broker_endpoint:
            raise ValueError("an agent needs a broker endpoint (broker= or a bundle that names one)")
        opts.connect_timeout = _duration(connect_timeout)
        opts.session_timeout = _duration(session_timeout)
        opts.heartbeat_interval = _duration(heartbeat_interval)
        opts.batch_signing = batch_signing
        opts.insecure_trust_any_broker = insecure_trust_any_broker
        opts.insecure_plain_tcp = insecure_plain_tcp

        self._handlers = _Handlers()
        self._core = _agentbus._Agent(opts, identity, policy if policy is not None else Policy.default(),
                                      _make_sink(self._handlers))
        self._finalizer = weakref.finalize(self, _close_core, self._core, self._handlers.life)
        _open_agents.add(self)

    # ---- identity and state

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._core.name

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def handler_errors(self) -> int:
        """How many times a handler raised (each was logged)."""
        return self._handlers.errors

    def stats(self) -> _agentbus.Stats:
        """The library's counters (sent, received, rejected_at_receive, refused_by_broker, ...)."""
        return self._core.stats()

    # ---- sending

    def send(self, to: str, payload: Payload, *, content_type: Optional[str] = None) -> None:
        """Send a data envelope to one agent. Returns once it is signed and queued; a
        refusal by the broker arrives later through :meth:`on_rejected`. Raises the
        :class:`Error` subclass for a refusal here (``AclDenied``, ``Overloaded``, ...)."""
        self._core.send(to, _content_type(payload, content_type), _payload(payload))

    def publish(self, topic: str, payload: Payload, *, content_type: Optional[str] = None) -> None:
        """Publish to every subscriber of ``topic`` (one end-to-end MAC each)."""
        self._core.publish(topic, _content_type(payload, content_type), _payload(payload))

    def request(self, to: str, payload: Payload, *, content_type: Optional[str] = None,
                timeout: Seconds = 5.0) -> Message:
        """Send a request and wait for the reply. Raises ``Timeout`` (also a
        ``TimeoutError``) when none comes in time, or the refusal's class."""
        return self._core.request(to, _content_type(payload, content_type), _payload(payload), _duration(timeout))

    # ---- receiving

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Call ``handler(message)`` for every envelope on ``topic``: a topic, or a
        pattern ("*" one segment, a final ">" the rest: ``"metrics/>"``). Waits for the
        broker's answer: raises ``AclDenied`` if the policy forbids it, ``InvalidField``
        if it is not a topic. Several handlers may follow one topic; each is called in
        turn."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        with self._handlers.lock:
            handlers = self._handlers.topics.setdefault(topic, [])
            first = not handlers
            handlers.append(handler)
        if not first:
            return
        try:
            self._core.subscribe(topic)
        except BaseException:
            with self._handlers.lock:
                self._handlers.topics.pop(topic, None)
            raise

    def queue_subscribe(self, topic: str, group: str, handler: MessageHandler) -> None:
        """Subscribe to ``topic`` (a topic or pattern) as a member of the queue group
        ``group``: of the agents in one group whose subscriptions match an envelope, one
        gets it (the broker takes them in turn, across a federation of brokers). One
        subscription per topic string: this replaces a plain one to ``topic`` (its
        handlers stay). Raises as :meth:`subscribe` does, ``InvalidField`` for a group
        name that is not 1..64 of A-Z a-z 0-9 . _ -."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        with self._handlers.lock:
            self._handlers.topics.setdefault(topic, []).append(handler)
        try:
            self._core.queue_subscribe(topic, group)
        except BaseException:
            with self._handlers.lock:
                handlers = self._handlers.topics.get(topic, [])
                if handler in handlers:
                    handlers.remove(handler)
                if not handlers:
                    self._handlers.topics.pop(topic, None)
            raise

    def unsubscribe(self, topic: str) -> None:
        """End the subscription to ``topic`` (as subscribed: a pattern ends that pattern)
        and drop its handlers. Raises ``InvalidField`` if there is none."""
        self._core.unsubscribe(topic)  # first: an InvalidField leaves the handlers as they were
        with self._handlers.lock:
            self._handlers.topics.pop(topic, None)

    def _remove_topic_handler(self, topic: str, handler: MessageHandler) -> None:
        # The subscription at the broker stays (another stream may follow the topic):
        # with no handler left, what arrives is counted and dropped here.
        with self._handlers.lock:
            handlers = self._handlers.topics.get(topic)
            if handlers and handler in handlers:
                handlers.remove(handler)

    def on_message(self, handler: Optional[MessageHandler]) -> None:
        """Call ``handler(message)`` for direct data envelopes (replaces the previous one)."""
        self._handlers.on_message = handler

    def on_request(self, handler: Optional[RequestHandler]) -> None:
        """``handler(message)`` answers requests: it returns the reply payload (bytes or
        str), or None for no reply (the requester then times out)."""
        self._handlers.on_request = handler

    def on_rejected(self, handler: Optional[RejectionHandler]) -> None:
        """Call ``handler(rejection)`` for every envelope refused by the broker, by this
        library at receive, or before it left. Without one, each is logged."""
        self._handlers.on_rejected = handler

    # ---- lifetime

    def close(self) -> None:
        """Leave the bus: stop the agent's threads; pending handlers are not called.
        Waits for calls in flight (a request waits at most its timeout). Idempotent;
        from a handler it returns at once and the agent stops when the handler ends."""
        self._finalizer()
        _open_agents.discard(self)

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "enrolled"
        return f"<agentbus.Agent {self.name} {state}>"
