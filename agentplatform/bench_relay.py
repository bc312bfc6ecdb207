"""The null relay: the floor the bridge is measured against in ``make bench``.

The thinnest bridge on the same stack as ``agentplatform serve`` (FastAPI on uvicorn,
the same event loop and WebSocket server, the same model socket client, ``ws_client``):
it parses each carrier frame and forwards its payload to the model socket, and each
model delta back as a media message and a mark; ``speech_started`` becomes a
``clear``. μ-law passes straight through (no transcoding), nothing is recorded, no
limits, no signatures. Whatever the bridge costs above this is the bridge's own.

With a media port the streams are served as ``MEDIA_LISTEN`` serves the bridge's: on
the compiled listener (``carriers/twilio/media_listener.py``, its ``MediaSocket``), the
TwiML pointing there; without one, on the FastAPI route.

Run as ``python -m agentplatform.bench_relay PORT MODEL_URL [MEDIA_PORT]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response, WebSocket

from agentplatform.realtime.ws_client import ModelSocket, connect

_APPEND = '{"type":"input_audio_buffer.append","audio":"'


def create_relay(model_url: str, media_port: int = 0) -> FastAPI:
    """The relay; with ``media_port`` its streams go to a media listener on that port."""
    listener = None
    if media_port:
        from agentplatform.carriers.twilio.media_listener import MediaListener

        listener = MediaListener("127.0.0.1", media_port)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if listener is None:
            yield
            return
        await listener.start(lambda ws, url: relay_stream(ws, model_url))
        try:
            yield
        finally:
            await listener.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/twilio/voice")
    async def voice(request: Request) -> Response:
        form = await request.form()
        host = request.headers.get("host", "")
        url = listener.stream_url(f"127.0.0.1:{listener.port}") if listener is not None \
            else f"wss://{host}/twilio/media"
        xml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
               f'<Stream url="{url}">'
               f'<Parameter name="from" value="{form.get("From", "")}"/></Stream>'
               '</Connect><Hangup/></Response>')
        return Response(xml, media_type="application/xml")

    @app.websocket("/twilio/media")
    async def media(ws: WebSocket) -> None:
        await relay_stream(ws, model_url)

    return app


async def relay_stream(ws: WebSocket | Any, model_url: str) -> None:
    """One stream, relayed: a Starlette ``WebSocket`` or the listener's ``MediaSocket``."""
    await ws.accept()
    stream_sid, caller = "", ""
    while not stream_sid:
        msg = orjson.loads(await ws.receive_text())
        if msg.get("event") == "start":
            stream_sid = msg["start"]["streamSid"]
            caller = msg["start"]["customParameters"].get("from", "")
    model = await connect(model_url, additional_headers={}, max_size=1 << 24)
    try:
        await model.recv()  # session.created
        await model.send(orjson.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": f"Null relay for caller {caller}.",
            "audio": {"input": {"format": {"type": "audio/pcmu"}},
                      "output": {"format": {"type": "audio/pcmu"}}}}}).decode())
        await model.recv()  # session.updated
        await model.send('{"type":"response.create"}')  # the greeting, as the bridge asks
        media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"m'
        clear = '{"event":"clear","streamSid":"' + stream_sid + '"}'

        async def up() -> None:
            if getattr(ws, "dispatch", None) is not None:
                await _up_in_callback(ws, model)
                return
            while True:
                msg = orjson.loads(await ws.receive_text())
                event = msg.get("event")
                if event == "media":
                    await _send_audio(model, _APPEND + msg["media"]["payload"] + '"}')
                elif event == "stop":
                    return

        send_texts = getattr(ws, "send_texts", None)  # the listener's: one write for both

        async def down() -> None:
            n = 0
            async for raw in model:
                event = orjson.loads(raw)
                kind = event.get("type")
                if kind == "response.output_audio.delta":
                    n += 1
                    if send_texts is not None:
                        await send_texts(media_prefix + event["delta"] + '"}}',
                                         mark_prefix + str(n) + '"}}')
                        continue
                    await ws.send_text(media_prefix + event["delta"] + '"}}')
                    await ws.send_text(mark_prefix + str(n) + '"}}')
                elif kind == "input_audio_buffer.speech_started":
                    await ws.send_text(clear)

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(model.close(), 1.0)


async def _up_in_callback(ws: Any, model: ModelSocket) -> None:
    """Caller to model on the media listener, as the bridge takes its frames there
    (``TwilioCallAudio.deliver_to``): each frame parsed and its append written inside
    the socket's callback; while the model reads slowly the appends wait here, in order."""
    waiting: list[str] = []
    stopped = False

    def on_frame(data: str | bytes) -> bool:
        nonlocal stopped
        msg = orjson.loads(data)
        event = msg.get("event")
        if event == "media":
            text = _APPEND + msg["media"]["payload"] + '"}'
            if model.writable:
                model.send_now(text)
                return False
            waiting.append(text)
            return True
        if event == "stop":
            stopped = True
            return True
        return False

    while not stopped:
        if not await ws.dispatch(on_frame):
            return  # the socket ended
        for text in waiting:
            await model.send(text)
        waiting.clear()


async def _send_audio(model: ModelSocket, text: str) -> None:
    """As the bridge's session sends audio: at once while the model keeps up."""
    if model.writable:
        model.send_now(text)
    else:
        await model.send(text)


def main() -> None:
    import uvicorn

    port, model_url = int(sys.argv[1]), sys.argv[2]
    media_port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    uvicorn.run(create_relay(model_url, media_port), host="127.0.0.1", port=port,
                log_level="warning", ws_max_size=1 << 20)


if __name__ == "__main__":
    main()
