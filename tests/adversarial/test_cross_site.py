"""
A cross-site form cannot run API calls with a browser's cached
credentials, and secrets in a ``Referer`` or a preflight's path never
reach the log.
"""

from __future__ import annotations

import json

import requests

from tests.adversarial.harness import CORE, Server, well_behaved


def test_a_form_post_is_not_executed_and_secrets_stay_out_of_the_log(server: Server) -> None:
    """
    The bodies a form or a no-CORS fetch can send (urlencoded, text/plain,
    no type) are refused as notJSON, even with valid credentials; a
    preflight for a ticket's revocation and a Referer holding a token are
    logged redacted.
    """
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"ran": True}, "c"]]})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Referer": "https://mail.example/app?access_token=REFERER-SECRET"}
        if content_type:
            headers["Content-Type"] = content_type
        response = requests.post(
            server.base + "/jmap/api/",
            data=body.encode(),
            headers=headers,
            auth=server.auth("mallory"),
            timeout=30,
        )
        assert response.status_code == 400, (content_type, response.text)
        assert response.json()["type"] == "urn:ietf:params:jmap:error:notJSON"
        assert '"ran"' not in response.text
    preflight = requests.options(
        server.base + "/jmap/ticket/PREFLIGHT-SECRET",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "DELETE"},
        timeout=30,
    )
    assert preflight.status_code == 204
    assert well_behaved(server, "alice") < 10
    server.stop()
    log = server.log()
    assert "POST /jmap/api/" in log
    assert "REFERER-SECRET" not in log
    assert "PREFLIGHT-SECRET" not in log
