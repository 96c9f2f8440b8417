"""The gateway's bearer-token dependency: every POST needs the token when one is configured, it
is checked before the body is read, and the OpenAPI document declares it where it applies."""

from __future__ import annotations

import pytest

from energy_pipelines.settings import Settings
from tests.gateway_helpers import (
    CORRELATE_URL,
    METER_URL,
    VEHICLE_URL,
    client_for,
    gateway_config,
    meter,
    spooled_lines,
)

POSTS = (METER_URL, VEHICLE_URL, CORRELATE_URL)
TOKEN = "s3cret-token"


# --- the token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic czNjcmV0LXRva2Vu", f"Token {TOKEN}", "Bearer nope"],
)
def test_every_post_without_the_right_token_gets_401(
    offline_settings: Settings, authorization: str | None
) -> None:
    config = gateway_config(offline_settings, token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    with client_for(config) as client:
        for url in POSTS:
            answer = client.post(url, json=[], headers=headers)
            assert answer.status_code == 401, (url, authorization)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json() == {
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "a valid bearer token is required (Authorization: Bearer <token>)",
            }
        assert spooled_lines(config) == 0


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer   {TOKEN}"])
def test_the_right_token_passes_in_any_case_of_the_scheme(
    offline_settings: Settings, authorization: str
) -> None:
    config = gateway_config(offline_settings, token=TOKEN)
    with client_for(config) as client:
        answer = client.post(
            METER_URL, json=meter("m-1", 0), headers={"Authorization": authorization}
        )
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
        assert spooled_lines(config) == 1


def test_a_non_ascii_token_is_compared_as_the_bytes_sent(offline_settings: Settings) -> None:
    config = gateway_config(offline_settings, token="clé-ü")
    with client_for(config) as client:
        right = {"Authorization": "Bearer clé-ü".encode()}
        assert client.post(METER_URL, json=meter("m-1", 0), headers=right).status_code == 202
        latin = {"Authorization": "Bearer clé-ü".encode("latin-1")}
        assert client.post(METER_URL, json=meter("m-1", 0), headers=latin).status_code == 401


def test_the_token_is_checked_before_the_body_is_read(offline_settings: Settings) -> None:
    # A body above the limit, or not JSON at all, still gets 401 first: an unauthenticated
    # client learns nothing about the body rules, and the gateway reads nothing of its body.
    config = gateway_config(offline_settings, token=TOKEN, max_body_bytes=100)
    with client_for(config) as client:
        too_big = client.post(METER_URL, json=[meter(f"m-{i}", 0) for i in range(20)])
        assert too_big.status_code == 401
        garbage = client.post(METER_URL, content=b"{not json")
        assert garbage.status_code == 401
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post(METER_URL, content=b"{not json", headers=authorized).status_code == 400


def test_reads_and_health_need_no_token(offline_settings: Settings) -> None:
    with client_for(gateway_config(offline_settings, token=TOKEN)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        # Refused for its id before any database is asked: not for a missing token.
        assert client.get("/v1/analytics/performance/%20").status_code == 404


def test_openapi_declares_the_token_exactly_where_it_is_required(
    offline_settings: Settings,
) -> None:
    with client_for(gateway_config(offline_settings, token=TOKEN)) as client:
        document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {
        "bearerToken": {"type": "http", "scheme": "bearer"}
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            guarded = path in POSTS
            assert ("security" in operation) == guarded, (method, path)
            assert ("401" in operation["responses"]) == guarded, (method, path)
            if guarded:
                assert operation["security"] == [{"bearerToken": []}]

    with client_for(gateway_config(offline_settings)) as client:
        open_document = client.get("/openapi.json").json()
    assert "securitySchemes" not in open_document["components"]
    for operations in open_document["paths"].values():
        for operation in operations.values():
            assert "security" not in operation and "401" not in operation["responses"]
