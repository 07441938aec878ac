"""LLM latency in /metrics; message text never in the logs."""

from __future__ import annotations

import logging

from tests.service.chat.conftest import SEND


async def test_llm_latency_is_exported_by_outcome(user_client, openai_server):
    await user_client.post(SEND, json={"message": "one"})
    await user_client.post(SEND, json={"message": "two", "stream": True})
    openai_server.script(status=500)
    await user_client.post(SEND, json={"message": "three"})

    metrics = (await user_client.get("/metrics")).text

    assert 'llm_request_duration_seconds_count{outcome="ok"} 2.0' in metrics
    assert 'llm_request_duration_seconds_count{outcome="upstream_error"} 1.0' in metrics


async def test_message_text_and_llm_error_text_are_never_logged(user_client, openai_server, caplog):
    secret = "SECRET-MESSAGE-5e1c"
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="admin_api")
    openai_server.script(answer=f"echo {secret}")

    await user_client.post(SEND, json={"message": secret})
    await user_client.post(SEND, json={"message": secret, "stream": True})
    openai_server.script(status=500, error_message=secret)
    await user_client.post(SEND, json={"message": secret})
    openai_server.script(error_chunk_after=0, error_message=secret)
    await user_client.post(SEND, json={"message": secret, "stream": True})

    assert caplog.records, "expected some log records"
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)
    assert any(getattr(r, "llm_outcome", None) == "upstream_error" for r in caplog.records)
