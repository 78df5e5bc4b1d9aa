"""
Identity (RFC 8621 §6) and VacationResponse (§8).
"""

from __future__ import annotations

import pytest_twisted

from tests.methods.harness import HarnessFactory


@pytest_twisted.ensureDeferred
async def test_default_identity_and_changes(make_harness: HarnessFactory) -> None:
    """
    An account has a default identity for its owner's address; names and
    signatures change; the address cannot become one the account may not
    send as; Identity/changes reports the update.
    """
    h = await make_harness()
    got = await h.ok("Identity/get", {"ids": None})
    (identity,) = got["list"]
    assert identity["email"] == "alice@example.com"
    assert identity["name"] == "alice"
    assert identity["mayDelete"] is True
    state = got["state"]
    result = await h.ok(
        "Identity/set",
        {"update": {identity["id"]: {"name": "Alice Liddell", "textSignature": "-- \nA."}}},
    )
    assert result["updated"] == {identity["id"]: None}
    changes = await h.ok("Identity/changes", {"sinceState": state})
    assert changes["updated"] == [identity["id"]]
    result = await h.ok(
        "Identity/set",
        {
            "create": {
                "bad": {"email": "mallory@evil.example"},
                "nomail": {"name": "x"},
                "ok": {
                    "email": "Alice@Example.com",
                    "name": "Work",
                    "replyTo": [{"email": "a@example.com"}],
                },
            }
        },
    )
    assert result["notCreated"]["bad"]["type"] == "forbiddenFrom"
    assert result["notCreated"]["nomail"]["properties"] == ["email"]
    assert result["created"]["ok"]["mayDelete"] is True
    destroyed = await h.ok("Identity/set", {"destroy": [result["created"]["ok"]["id"]]})
    assert destroyed["destroyed"] == [result["created"]["ok"]["id"]]


@pytest_twisted.ensureDeferred
async def test_vacation_singleton(make_harness: HarnessFactory) -> None:
    """
    The VacationResponse singleton starts disabled, updates by patch,
    refuses bad dates, cannot be created or destroyed, and other ids are
    notFound.
    """
    h = await make_harness()
    got = await h.ok("VacationResponse/get", {"ids": None})
    assert got["list"] == [
        {
            "id": "singleton",
            "isEnabled": False,
            "fromDate": None,
            "toDate": None,
            "subject": None,
            "textBody": None,
            "htmlBody": None,
        }
    ]
    result = await h.ok(
        "VacationResponse/set",
        {
            "update": {
                "singleton": {
                    "isEnabled": True,
                    "subject": "Away",
                    "toDate": "2027-01-01T00:00:00Z",
                },
                "other": {"isEnabled": True},
            },
            "create": {"x": {}},
            "destroy": ["singleton"],
        },
    )
    assert result["updated"] == {"singleton": None}
    assert result["notUpdated"]["other"]["type"] == "notFound"
    assert result["notCreated"]["x"]["type"] == "singleton"
    assert result["notDestroyed"]["singleton"]["type"] == "singleton"
    got = await h.ok("VacationResponse/get", {"ids": ["singleton", "nope"]})
    assert got["list"][0]["isEnabled"] is True and got["list"][0]["subject"] == "Away"
    assert got["notFound"] == ["nope"]
    bad = await h.ok("VacationResponse/set", {"update": {"singleton": {"fromDate": "soon"}}})
    assert bad["notUpdated"]["singleton"]["properties"] == ["fromDate"]
