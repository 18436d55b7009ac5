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
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Union

from ._agent import Agent, HandlerAbandoned, Payload, Seconds
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
        """Wrap a handler so that what it returns, if awaitable (an ``async def``, or a
        callable object whose ``__call__`` is one), runs on the event loop; the dispatch
        thread waits for the result as it waits for a plain handler, and gives up when
        the agent closes or the loop goes away (so closing never waits on itself)."""
        loop = self._loop
        closing = self._agent._handlers.life.closing

        async def awaited(awaitable: Awaitable[Any]) -> Any:
            return await awaitable

        def run(value: Any) -> Any:
            result = handler(value)
            if not inspect.isawaitable(result):
                return result
            if loop.is_closed():
                raise RuntimeError("the event loop of this AsyncAgent is closed")
            future = asyncio.run_coroutine_threadsafe(awaited(result), loop)
            while True:
                try:
                    return future.result(timeout=0.25)
                except concurrent.futures.TimeoutError:
                    if closing.is_set() or loop.is_closed():
                        future.cancel()  # the coroutine is cancelled: its agent is going away
                        raise HandlerAbandoned("the agent closed (or its event loop did) before it finished")

        return run

    async def subscribe(self, topic: str, handler: Callable[[Message], Union[None, Awaitable[None]]]) -> None:
        await self._call(self._agent.subscribe, topic, self._on_loop(handler))

    async def queue_subscribe(self, topic: str, group: str,
                              handler: Callable[[Message], Union[None, Awaitable[None]]]) -> None:
        await self._call(self._agent.queue_subscribe, topic, group, self._on_loop(handler))

    async def unsubscribe(self, topic: str) -> None:
        await self._call(self._agent.unsubscribe, topic)

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
        if self._agent.closed:
            raise RuntimeError(f"agent '{self.name}' is closed")
        stream = _Stream(self._loop, maxsize, self._agent._handlers.life.closing)
        self._streams.add(stream)
        self._agent._handlers.life.add_close_hook(stream.end)
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
                stream.room.release()
                yield item
        finally:
            stream.close()
            self._streams.discard(stream)
            self._agent._handlers.life.remove_close_hook(stream.end)
            if topic is None:
                with self._agent._handlers.lock:
                    if stream.put in self._agent._handlers.direct_listeners:
                        self._agent._handlers.direct_listeners.remove(stream.put)
            else:
                self._agent._remove_topic_handler(topic, stream.put)

    # ---- lifetime

    async def close(self) -> None:
        """Close the agent (in a worker thread) and end every ``messages()`` loop (closing
        the underlying Agent any other way ends them too)."""
        await self._call(self._agent.close)

    async def __aenter__(self) -> "AsyncAgent":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Stream:
    """A bounded queue between the agent's dispatch thread and one ``async for``.

    ``room`` counts the free places: the dispatch thread takes one before handing a
    message to the loop (call_soon_threadsafe, exactly once per message), the consumer
    gives it back when it takes the message. The asyncio queue itself is unbounded, so
    a hand-over never fails and is never repeated."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, closing: threading.Event) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.loop = loop
        self.queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self.room = threading.Semaphore(maxsize)
        self.agent_closing = closing
        self.closed = False

    def put(self, msg: Message) -> None:
        # Runs on the dispatch thread: wait for room, giving up when the consumer has
        # gone (its iteration ended, its loop closed) or the agent is closing.
        while not self.room.acquire(timeout=0.25):
            if self.closed or self.loop.is_closed() or self.agent_closing.is_set():
                log.warning("agentbus: a message from %s arrived after its stream ended", msg.sender)
                return
        if self.closed or self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def end(self) -> None:
        """Ends the iteration (after what is queued); called when the agent closes."""
        self.closed = True
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, _CLOSED)
            except RuntimeError:
                pass

    def close(self) -> None:
        self.closed = True
