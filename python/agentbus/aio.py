"""agentbus for asyncio programs.

::

    agent = await agentbus.AsyncAgent.connect(identity=key, bundle="optimizer-1.bundle.toml")
    async with agent:
        reply = await agent.request("architect-1", b"which cache?")
        async for msg in agent.messages("metrics/cpu"):
            ...

Each blocking call of :class:`agentbus.Agent` runs in a worker thread, so the event
loop never waits on the bus. Messages reach coroutines through bounded queues: when
an ``async for`` loop falls behind, the agent's dispatch thread waits for room, the
agent stops reading, and the broker answers further senders ``overloaded`` (the
bus's flow control; nothing is dropped unseen). Handlers given to
:meth:`AsyncAgent.on_request` and :meth:`AsyncAgent.subscribe` may be coroutine
functions; they run on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Union

from ._agent import Agent, Payload, Seconds
from ._agentbus import Message, Rejection, Stats

log = logging.getLogger("agentbus")

_CLOSED = object()


class AsyncAgent:
    """The asyncio form of :class:`agentbus.Agent` (same arguments, same exceptions).
    Create it with ``await AsyncAgent.connect(...)``."""

    def __init__(self, agent: Agent, loop: asyncio.AbstractEventLoop) -> None:
        self._agent = agent
        self._loop = loop
        self._streams: set["_Stream"] = set()

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> "AsyncAgent":
        """Enrol (in a worker thread) and return the agent. Takes Agent's arguments."""
        loop = asyncio.get_running_loop()
        agent = await loop.run_in_executor(None, functools.partial(Agent, *args, **kwargs))
        return cls(agent, loop)

    @property
    def agent(self) -> Agent:
        """The underlying thread-based Agent."""
        return self._agent

    @property
    def name(self) -> str:
        return self._agent.name

    def stats(self) -> Stats:
        return self._agent.stats()

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def send(self, to: str, payload: Payload, *, content_type: Optional[str] = None) -> None:
        await self._call(self._agent.send, to, payload, content_type=content_type)

    async def publish(self, topic: str, payload: Payload, *, content_type: Optional[str] = None) -> None:
        await self._call(self._agent.publish, topic, payload, content_type=content_type)

    async def request(self, to: str, payload: Payload, *, content_type: Optional[str] = None,
                      timeout: Seconds = 5.0) -> Message:
        return await self._call(self._agent.request, to, payload, content_type=content_type, timeout=timeout)

    # ---- handlers that may be coroutines

    def _on_loop(self, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap a handler so that it runs on the event loop; the dispatch thread waits
        for its result (as it waits for a plain handler)."""
        if not inspect.iscoroutinefunction(handler):
            return handler
        loop = self._loop

        def run(value: Any) -> Any:
            if loop.is_closed():
                raise RuntimeError("the event loop of this AsyncAgent is closed")
            return asyncio.run_coroutine_threadsafe(handler(value), loop).result()

        return run

    async def subscribe(self, topic: str, handler: Callable[[Message], Union[None, Awaitable[None]]]) -> None:
        await self._call(self._agent.subscribe, topic, self._on_loop(handler))

    def on_message(self, handler: Optional[Callable[[Message], Any]]) -> None:
        self._agent.on_message(self._on_loop(handler) if handler else None)

    def on_request(self, handler: Optional[Callable[[Message], Any]]) -> None:
        """``handler`` (plain or ``async def``) returns the reply payload, or None."""
        self._agent.on_request(self._on_loop(handler) if handler else None)

    def on_rejected(self, handler: Optional[Callable[[Rejection], Any]]) -> None:
        self._agent.on_rejected(self._on_loop(handler) if handler else None)

    # ---- streams

    async def messages(self, topic: Optional[str] = None, *, maxsize: int = 1000) -> AsyncIterator[Message]:
        """Iterate over the messages on ``topic`` (subscribing to it), or over direct
        messages when ``topic`` is None. At most ``maxsize`` wait in the queue; then
        the agent waits for this loop (flow control). Ends when the agent closes."""
        stream = _Stream(self._loop, maxsize)
        self._streams.add(stream)
        try:
            if topic is None:
                with self._agent._handlers.lock:
                    self._agent._handlers.direct_listeners.append(stream.put)
            else:
                await self._call(self._agent.subscribe, topic, stream.put)
            while True:
                item = await stream.queue.get()
                if item is _CLOSED:
                    return
                yield item
        finally:
            stream.close()
            self._streams.discard(stream)
            if topic is None:
                with self._agent._handlers.lock:
                    if stream.put in self._agent._handlers.direct_listeners:
                        self._agent._handlers.direct_listeners.remove(stream.put)
            else:
                self._agent._remove_topic_handler(topic, stream.put)

    # ---- lifetime

    async def close(self) -> None:
        """Close the agent (in a worker thread) and end every ``messages()`` loop."""
        for stream in list(self._streams):
            stream.end()
        await self._call(self._agent.close)

    async def __aenter__(self) -> "AsyncAgent":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Stream:
    """A bounded queue between the agent's dispatch thread and one ``async for``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: "asyncio.Queue[Any]" = asyncio.Queue(maxsize)
        self.closed = False

    def put(self, msg: Message) -> None:
        # Runs on the dispatch thread: wait for room, checking now and then that the
        # consumer has not gone away (its loop closed or the iteration ended).
        while not self.closed and not self.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self.queue.put(msg), self.loop)
            try:
                future.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                if not future.cancel():  # it completed meanwhile: the message is queued
                    future.result()
                    return
        log.warning("agentbus: message from %s arrived after its stream ended", msg.sender)

    def end(self) -> None:
        if self.loop.is_closed():
            return

        def push_end() -> None:
            while True:
                try:
                    self.queue.put_nowait(_CLOSED)
                    return
                except asyncio.QueueFull:
                    self.queue.get_nowait()  # the end matters more than the oldest waiting message

        self.loop.call_soon_threadsafe(push_end)

    def close(self) -> None:
        self.closed = True
