"""``dragoman bench pipeline``: what the pipeline itself costs, models taken out.

A speaker streams a short utterance in real time, as a client does, and ``flush``es it; a listener in another
language waits for the first synthesized audio. Between the flush and that
``audio_start`` the message crosses gateway → stt → translate → tts →
gateway: four Kafka hops, three Faust agents, two WebSockets. Each stage
stamps the model time it spent (``compute_s``) on the message; the bench
reads those stamps from ``audio.synthesized`` and subtracts them, leaving the
pipeline's own overhead. It reports the median, the 90th percentile when there
are at least ten samples, and the maximum: a p99 of thirty samples would be the max.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
from aiokafka import AIOKafkaConsumer

from schemas import SynthesizedAudio, decode
from streams.cli.measures import percentile
from streams.cli.realtime import play
from streams.settings import get_settings
from streams.topics import AUDIO_SYNTHESIZED

MIN_SAMPLES_FOR_P90 = 10
SETTLE_S = 2.0
"""Pause between speech and flush, so partial hypotheses are done before the clock starts."""


async def _measure(url: str, bootstrap: str, secret: str, utterances: int, speech: bytes) -> dict[str, list[float]]:
    from web.auth import mint

    compute_s: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        AUDIO_SYNTHESIZED.name,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=get_settings().fetch_max_wait_ms,
    )
    await consumer.start()

    async def read_stamps() -> None:
        async for message in consumer:
            chunk = decode(SynthesizedAudio, message.value)
            if chunk.chunk_index == 0:
                compute_s[chunk.utterance_id] = sum(t.compute_s for t in chunk.timings)

    reader = asyncio.create_task(read_stamps())
    room, ws_url = f"bench-{uuid.uuid4().hex[:8]}", url.replace("http", "ws", 1)
    results: dict[str, list[float]] = {"end_to_end_s": [], "models_s": [], "overhead_s": []}
    try:
        async with aiohttp.ClientSession() as http:
            speaker = await http.ws_connect(
                f"{ws_url}/ws/audio/{room}?token={mint(secret, room, 'speaker')}&speak=en&listen=en"
            )
            listener = await http.ws_connect(
                f"{ws_url}/ws/audio/{room}?token={mint(secret, room, 'listener')}&speak=es&listen=es"
            )
            await speaker.receive_json()
            await listener.receive_json()
            await asyncio.sleep(SETTLE_S)  # the translate worker's room table sees the listener
            for _ in range(utterances):
                await play(speaker, speech)
                await asyncio.sleep(SETTLE_S)
                flushed_at = time.time()
                await speaker.send_str(json.dumps({"type": "flush"}))
                utterance_id, first_audio_at = None, 0.0
                while True:
                    message = await listener.receive(timeout=60)
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    event = json.loads(message.data)
                    if event["type"] == "audio_start" and utterance_id is None:
                        utterance_id, first_audio_at = event["utterance_id"], time.time()
                    if event["type"] == "audio_end" and event["utterance_id"] == utterance_id:
                        break
                for _ in range(100):
                    if utterance_id in compute_s:
                        break
                    await asyncio.sleep(0.02)
                total, models = first_audio_at - flushed_at, compute_s[str(utterance_id)]
                results["end_to_end_s"].append(total)
                results["models_s"].append(models)
                results["overhead_s"].append(total - models)
            await speaker.close()
            await listener.close()
    finally:
        reader.cancel()
        await consumer.stop()
    return results


def bench_pipeline(url: str, bootstrap: str, secret: str, utterances: int, speech: bytes) -> dict[str, object]:
    """Run the bench against a running system; prints a table and a JSON line, returns the figures."""
    results = asyncio.run(_measure(url, bootstrap, secret, utterances, speech))
    settings = get_settings()
    summary: dict[str, object] = {
        "bench": "pipeline",
        "utterances": utterances,
        "broker": "external" if settings.kafka_bootstrap else "embedded tansu",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
    print(f"{'flush → first synthesized audio':<34} {'p50':>8} {'p90':>8} {'max':>8}")
    for name, values in results.items():
        p50, top = percentile(values, 0.5), max(values)
        p90 = percentile(values, 0.9) if len(values) >= MIN_SAMPLES_FOR_P90 else None
        summary[name] = {"p50": round(p50, 4), "p90": None if p90 is None else round(p90, 4), "max": round(top, 4)}
        shown = "—" if p90 is None else f"{p90 * 1000:.0f}ms"
        print(f"{name:<34} {p50 * 1000:>6.0f}ms {shown:>8} {top * 1000:>6.0f}ms")
    print(json.dumps(summary))
    return summary
