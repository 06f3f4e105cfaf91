"""The web actor: Hex's local page, served by uvicorn inside the actor's own process and loop.

It is a thin dispatcher: chat events from the bus go to :class:`actors.web.chat.WebChat`, which
hands them to the open tabs through :class:`actors.web.hub.Hub` (bounded per tab, never
waiting); what tabs send comes back through the same class as bus events. The HTTP server is one
of the actor's spawned tasks on a socket bound in :meth:`setup`, so a port already taken is a
one-line reason in ``hexbus status``, not a crash loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from actors.web.auth import WILDCARDS, PageFile, allowed_hosts, cookie_name
from actors.web.chat import CONVERSATION, WebChat, markdown_renderer
from actors.web.config import WebConfig
from actors.web.hub import Hub
from actors.web.voice import WebVoice
from hexbus import Actor, ActorUnusable, NoState, on
from hexbus.config import is_loopback
from hexbus.control import ControlReply, ControlRequest, SupervisorUnreachable, call
from schemas import (
    AudioOut,
    BrokerHeartbeat,
    CapabilityChanged,
    ChatAck,
    DeadLetter,
    Heartbeat,
    MemoryChanged,
    MemoryProgress,
    Metric,
    Notice,
    PersonaAuditProgress,
    PersonaChanged,
    Reply,
    ReplyChunk,
    SelfmodChanged,
    Speaking,
    Transcript,
    Utterance,
)

__all__ = ["WebActor"]

STATUS_EVERY_S = 2.0
RUNTIME_TYPES = frozenset({"runtime", "control", "capabilities", "capability"})


class WebActor(Actor[WebConfig, NoState]):
    """The page: chat in the browser, on the bus like any other platform."""

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.reply.web",
        "chat.reply.chunk.web",
        "chat.notice.web",
        "chat.ack",
        "sys.heartbeat",  # every actor's counters, for /metrics
        "sys.broker.heartbeat",  # the journal's head
        "metrics",  # latency stages
        "memory.changed",  # reports of what the memory panel asked
        "memory.progress",  # an upload's embedding, chunk by chunk
        "brain.persona.changed",  # the persona panel's edits and rollbacks, and file edits
        "brain.persona.audit.progress",
        "selfmod.changed",  # her proposals: ready, decided (here or elsewhere), rolled back
        "stt.final",  # what a person said in the page's voice mode (their bubble)
        "sys.deadletter",  # each actor's dead letters still open, for the table and /metrics
        "capability.changed",  # the switches: the runtime panel shows them as they change
    )
    config_type = WebConfig

    hub: Hub
    chat: WebChat
    gatherer: Any  # actors.web.metrics.Gatherer (prometheus_client is imported in setup)
    runtime: Any  # actors.web.runtime.RuntimePanel
    tail: Any  # actors.web.tail.BusTail
    memory: Any  # actors.web.memory.MemoryPanel
    persona: Any  # actors.web.persona.PersonaPanel
    selfmod: Any  # actors.web.selfmod.SelfmodPanel
    usage: Any  # actors.web.usage.UsagePanel
    voice: WebVoice
    pages: PageFile | None = None

    async def setup(self) -> None:
        try:
            import uvicorn
            import websockets  # noqa: F401 (uvicorn's websocket protocol)

            from actors.web.app import build_app
            from actors.web.memory import MemoryPanel
            from actors.web.metrics import Gatherer
            from actors.web.persona import PersonaPanel
            from actors.web.runtime import RuntimePanel
            from actors.web.selfmod import SelfmodPanel
            from actors.web.tail import BusTail
            from actors.web.usage import Machine, UsagePanel

            render = markdown_renderer()
        except ImportError as exc:
            raise ActorUnusable(
                f"the page's libraries are not installed ({exc}): pip install -e '.[web]'"
            ) from None
        config = self.config
        tls = self._tls()
        pages = PageFile(self.run_dir or self.data_dir, self.name)
        supervisor = PageFile.supervisor()
        token, last_port = pages.session(supervisor)
        sock = self._bind(config.port or last_port)
        port = sock.getsockname()[1]
        pages.save_session(token, port, supervisor)
        url = f"{'https' if tls else 'http'}://{self._shown_host()}:{port}/"
        self.hub = Hub(max_clients=config.max_clients, queue_size=config.client_queue)
        spawn = lambda coro, name: self.spawn(coro, name=name)  # noqa: E731
        self.chat = WebChat(
            config,
            self.hub,
            self._publish,
            render,
            request=self.request,
            spawn=spawn,
            # Until the supervisor's table is read, memory is taken to be there.
            memory_up=lambda: (
                not self.gatherer.status or config.memory_actor in self.gatherer.status
            ),
            offload=self.offload,
        )
        self.memory = MemoryPanel(
            self.hub,
            request=self.request,
            request_blob=self.request_blob,
            publish=self._publish,
            new_id=self.bus.ids.next,
            spawn=spawn,
            max_blob_bytes=self.bus.endpoints.max_blob_mb << 20,
            max_import_bytes=config.max_import_mb << 20,
        )
        self.voice = WebVoice(
            self.hub,
            self.bus.publish_volatile,
            channel=WebChat.channel,
            display_name=config.display_name,
            actor=self.name,
        )
        # Hex's speech and the partial transcripts of this page's person only (channels are
        # "person/conversation"): another person's audio never reaches this process.
        for family in ("audio.out", "tts.speaking", "stt.partial"):
            self.bus.subscribe(f"{family}.{config.person_id}/")
        self.persona = PersonaPanel(
            self.hub,
            request=self.request,
            publish=self._publish,
            new_id=self.bus.ids.next,
            spawn=spawn,
            me=self.name,
        )
        self.selfmod = SelfmodPanel(
            self.hub, request=self.request, publish=self._publish, new_id=self.bus.ids.next
        )
        self.gatherer = Gatherer()
        self.usage = UsagePanel(
            self.hub,
            self.gatherer,
            request=self.request,
            offload=self.offload,
            machine=await self.offload(Machine),
            rows=lambda: self.runtime.rows(),
        )
        self.runtime = RuntimePanel(
            self.hub, self.gatherer, self._publish, self._control, me=self.name
        )
        self.tail = BusTail(self.hub, self.bus.endpoints, spawn)
        app = build_app(
            token=token,
            cookie=cookie_name(port),
            allowed=allowed_hosts(port, config.public_names, config.host, tls is not None),
            url=url,
            secure=tls is not None,
            hub=self.hub,
            commands=self._command,
            person=(config.person_id, config.owner),
            spawn=spawn,
            metrics=self.gatherer.exposition,
            routes=self.memory.routes(),
        )
        server_config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="websockets",
            ws_max_size=4 << 20,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            # No permessage-deflate: every frame would be compressed once per tab (fifty tabs
            # tailing the bus spent most of the actor's CPU in zlib), PCM audio barely shrinks,
            # and the page is on this machine or its network.
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        )
        try:
            server_config.load()  # the TLS context is built here: a bad PEM is a reason, not a loop
        except (OSError, ValueError) as exc:
            sock.close()
            raise ActorUnusable(
                f"cannot use tls_cert / tls_key ({exc}): give a PEM certificate and its key"
            ) from None
        server = _server(server_config)
        self.spawn(self._serve(server, sock), name="http")
        self.spawn(self._ask_supervisor(), name="supervisor-status")
        self.spawn(self._watch_usage(), name="usage")
        for _ in range(200):  # the note only once the page answers
            if server.started:
                break
            await asyncio.sleep(0.01)
        pages.write(url=url, token=token)
        self.pages = pages
        self.detail = url
        self.log.info("web.serving", url=url, tls=tls is not None)

    def _shown_host(self) -> str:
        """The host in the page's address: the bound one, or the first public name (else
        127.0.0.1) for a wildcard."""
        host = self.config.host
        if host in WILDCARDS:
            return self.config.public_names[0] if self.config.public_names else "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    async def _ask_supervisor(self) -> None:
        """The supervisor's table (state, restarts, uptime) for /metrics and the runtime panel,
        every couple of seconds."""
        request = ControlRequest(cmd="status")
        while True:
            try:
                reply = await self._control(request, 2.0)
                if reply.ok:
                    self.gatherer.supervisor(reply.data)
                    self.runtime.tick()
                if self.runtime.wants_log():
                    await self.runtime.read_log()
            except SupervisorUnreachable:
                pass  # a remote host's actor, or the supervisor restarting: the beats still count
            await asyncio.sleep(STATUS_EVERY_S)

    async def _watch_usage(self) -> None:
        """The brain's tokens and backends for /metrics, and the usage panel while a tab shows it."""
        while True:
            await self.usage.tick()
            await asyncio.sleep(STATUS_EVERY_S)

    async def _control(self, request: ControlRequest, timeout: float = 60.0) -> ControlReply:
        try:
            return await self.offload(call, self.bus.endpoints.control, request, timeout)
        except SupervisorUnreachable as exc:
            if request.cmd == "status":
                raise
            return ControlReply(ok=False, error=f"the supervisor did not answer: {exc}")

    async def _command(self, client: Any, message: Any) -> None:
        """What a tab sent: the runtime panel's requests, else chat."""
        if isinstance(message, dict) and message.get("t") in RUNTIME_TYPES:
            await self.runtime.command(client, message)
        elif isinstance(message, dict) and message.get("t") == "tail":
            self.tail.command(client, message)
        elif isinstance(message, dict) and message.get("t") == "memory":
            await self.memory.command(client, message)
        elif isinstance(message, dict) and message.get("t") == "persona":
            await self.persona.command(client, message)
        elif isinstance(message, dict) and message.get("t") == "selfmod":
            await self.selfmod.command(client, message)
        elif isinstance(message, dict) and message.get("t") == "usage":
            await self.usage.command(client, message)
        elif isinstance(message, dict) and message.get("t") in ("voice", "audio"):
            conversation = message.get("conversation", "main")
            if isinstance(conversation, str) and CONVERSATION.fullmatch(conversation):
                self.voice.command(client, message, conversation)
            else:
                self.hub.send(client, {"t": "error", "text": "a conversation is 1 to 64 letters"})
        else:
            await self.chat.command(client, message)

    async def _serve(self, server: Any, sock: socket.socket) -> None:
        await server.serve(sockets=[sock])
        if not server.should_exit:  # it ended by itself: the page is gone, say so loudly
            self.detail = "the page's server stopped"
            raise RuntimeError("the page's HTTP server stopped unexpectedly")

    def _tls(self) -> tuple[str, str] | None:
        """The certificate and key files, or None on a loopback address without TLS."""
        config = self.config
        if not config.tls_cert:
            if not is_loopback(config.host):
                raise ActorUnusable(
                    f"the page would be served on {config.host} without TLS: set tls_cert and "
                    'tls_key in [actors.web.config], or host = "127.0.0.1"'
                )
            return None
        files = []
        for value in (config.tls_cert, config.tls_key):
            path = (self.config_dir / Path(value).expanduser()).resolve()
            if not path.is_file():
                raise ActorUnusable(f"TLS file {path} does not exist: fix tls_cert / tls_key")
            files.append(str(path))
        return files[0], files[1]

    def _bind(self, port: int) -> socket.socket:
        """A listening socket on ``port``; with ``port = 0`` in the config, the port this run
        served on before (a restart keeps the tabs' address) or, if it is taken, any."""
        config = self.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            try:
                sock.bind((config.host, port))
            except OSError:
                if config.port:
                    raise
                sock.bind((config.host, 0))
        except OSError as exc:
            sock.close()
            raise ActorUnusable(
                f"cannot serve the page on {config.host}:{config.port} ({exc.strerror}): "
                "set another port in [actors.web.config] (0 takes any free one), then "
                f"`hexbus restart {self.name}`"
            ) from None
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def _publish(self, event: Any, *, blob: bytes | None = None, event_id: str = "") -> Any:
        return await self.publish(event, key="web", blob=blob, event_id=event_id)

    async def teardown(self) -> None:
        if self.pages is not None:
            self.pages.remove()

    @on(ChatAck)
    async def on_ack(self, event: ChatAck) -> None:
        self.chat.ack(event)

    @on(ReplyChunk)
    async def on_chunk(self, event: ReplyChunk) -> None:
        self.chat.chunk(event)
        # The runtime hands over a burst of volatile events back to back: a turn between pieces
        # lets the tabs' writers send, so a burst longer than a tab's queue drops only a tab that
        # does not read.
        await asyncio.sleep(0)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        self.chat.reply(event)

    @on(Notice)
    async def on_notice(self, event: Notice) -> None:
        self.chat.notice(event)

    @on(MemoryChanged)
    async def on_memory_changed(self, event: MemoryChanged) -> None:
        assert self.envelope is not None
        self.memory.changed(self.envelope, event)

    @on(MemoryProgress)
    async def on_memory_progress(self, event: MemoryProgress) -> None:
        self.memory.progress(event)

    @on(PersonaChanged)
    async def on_persona_changed(self, event: PersonaChanged) -> None:
        assert self.envelope is not None
        await self.persona.changed(self.envelope, event)

    @on(SelfmodChanged)
    async def on_selfmod_changed(self, event: SelfmodChanged) -> None:
        assert self.envelope is not None
        self.selfmod.changed(self.envelope, event)

    @on(PersonaAuditProgress)
    async def on_audit_progress(self, event: PersonaAuditProgress) -> None:
        self.persona.progress(event)

    @on(AudioOut)
    async def on_audio_out(self, event: AudioOut) -> None:
        self.voice.audio(event, bytes(self.blob or b""))
        await asyncio.sleep(0)  # a burst of chunks: let the tabs' writers send between them

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        self.voice.speaking(event)

    @on(Utterance)
    async def on_heard(self, event: Utterance) -> None:
        self.voice.heard(event)

    @on(Transcript)
    async def on_hearing(self, event: Transcript) -> None:
        self.voice.hearing(event)

    @on(CapabilityChanged)
    async def on_capability(self, event: CapabilityChanged) -> None:
        await self.runtime.switches_changed()

    @on(DeadLetter)
    async def on_dead_letter(self, event: DeadLetter) -> None:
        self.gatherer.dead_letter(event)

    @on(Heartbeat)
    async def on_heartbeat(self, event: Heartbeat) -> None:
        self.gatherer.heartbeat(event)

    @on(BrokerHeartbeat)
    async def on_broker(self, event: BrokerHeartbeat) -> None:
        self.gatherer.broker(event)

    @on(Metric)
    async def on_metric(self, event: Metric) -> None:
        self.gatherer.metric(event)
        self.usage.metric(event)


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal handlers: the actor's runtime owns SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def _server(config: Any) -> Any:
    """A uvicorn server for ``config`` (the class is made on first use: uvicorn is optional)."""
    return _server_class()(config)
