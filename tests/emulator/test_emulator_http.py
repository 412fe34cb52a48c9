"""HTTP-level behaviour: rate limiting, fault injection, admin endpoints (httpx and the SDK)."""

from __future__ import annotations

import json
import time
from datetime import date

import httpx
import pytest
from ubiops.exceptions import ApiException

from tests.emulator.conftest import admin_client


def _client(srv) -> httpx.Client:
    return httpx.Client(
        base_url=srv.base_url, headers={"Authorization": f"Token {srv.token}"}, timeout=10
    )


def test_rate_limit_headers_and_429(server_factory) -> None:
    srv = server_factory(rate_limit_per_minute=5)
    with _client(srv) as client:
        remaining = []
        for _ in range(5):
            response = client.get("/organizations")
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "5"
            reset = int(response.headers["x-ratelimit-reset"])
            assert 1 <= reset <= 60
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        refused = client.get("/organizations")
        # a request crossing a minute boundary could land in a fresh window; retry once
        if refused.status_code == 200:
            for _ in range(5):
                refused = client.get("/organizations")
    assert remaining == [4, 3, 2, 1, 0] or remaining[-1] >= 0
    assert refused.status_code == 429
    assert "Rate limit" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) == int(refused.headers["x-ratelimit-reset"]) >= 1
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # errors count and carry headers too; /status and /_emulator are never limited
    assert httpx.get(srv.root_url + "/v2.1/status").status_code == 200
    with admin_client(srv) as admin:
        assert admin.get("/faults").status_code == 200
    srv.reset_rate_limit()
    with _client(srv) as client:
        unauthorised = client.get("/organizations", headers={"Authorization": "Token nope"})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["x-ratelimit-remaining"] == "4"


def test_sdk_sees_429_as_api_exception(server_factory, api_for) -> None:
    srv = server_factory(rate_limit_per_minute=1)
    api = api_for(srv.base_url, srv.token)
    api.organizations_list()
    with pytest.raises(ApiException) as exc:
        for _ in range(3):  # tolerate a minute boundary
            api.organizations_list()
    assert exc.value.status == 429


def test_rate_limit_off_omits_headers(shared_server) -> None:
    with _client(shared_server) as client:
        response = client.get("/organizations")
    assert response.status_code == 200
    assert not any(h.startswith("x-ratelimit") for h in response.headers)


def test_fault_5xx_sequence_and_sdk_does_not_retry(fresh_server, fresh_api) -> None:
    fresh_server.set_faults(errors_5xx=3)
    with _client(fresh_server) as client:
        statuses = [client.get("/organizations").status_code for _ in range(4)]
    assert statuses == [500, 502, 503, 200]
    fresh_server.set_faults(errors_5xx=1)
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_list()
    assert exc.value.status == 500
    assert len(fresh_api.organizations_list()) == 6


def test_fault_burst_429(server_factory) -> None:
    srv = server_factory(rate_limit_per_minute=300, faults={"burst_429": 2})
    with _client(srv) as client:
        first, second, third = (client.get("/organizations") for _ in range(3))
    for response in (first, second):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-ratelimit-reset"] == "1"
        assert response.headers["x-ratelimit-limit"] == "300"
        assert "error" in response.json()
    assert third.status_code == 200


def test_fault_slow(fresh_server) -> None:
    fresh_server.set_faults(slow_ms=300, slow_count=1)
    with _client(fresh_server) as client:
        started = time.monotonic()
        assert client.get("/organizations").status_code == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        client.get("/organizations")
        fast = time.monotonic() - started
    assert slow >= 0.3 > fast
    # an answer 3x later than the client waits for times out (the server's delayed answer
    # still holds up its stop, so the delay is no longer than that needs)
    fresh_server.set_faults(slow_ms=600, slow_count=1)
    with _client(fresh_server) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/organizations", timeout=0.2)


def test_fault_drop_connection(fresh_server, fresh_api) -> None:
    fresh_server.set_faults(drop_connections=1)
    with _client(fresh_server) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/organizations")
        assert client.get("/organizations").status_code == 200
    fresh_server.set_faults(drop_connections=1)
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_list()
    assert exc.value.status == 0  # SDK: ApiConnectionError


def test_fault_malformed_json(fresh_server) -> None:
    fresh_server.set_faults(malformed_json=1)
    with _client(fresh_server) as client:
        broken = client.get("/organizations/acme-analytics/usage")
        assert broken.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        assert client.get("/organizations/acme-analytics/usage").json()["interval"] == "month"


def test_deleted_projects_key_spelling_breaks_sdk(fresh_server, fresh_api) -> None:
    fresh_server.set_faults(deleted_projects_key="data_projects_deleted")
    with _client(fresh_server) as client:
        body = client.get("/organizations/acme-analytics/usage").json()
    assert "data_projects_deleted" in body and "data_deleted_projects" not in body
    with pytest.raises(ValueError, match="data_deleted_projects"):
        fresh_api.organizations_usage_get("acme-analytics")
    fresh_server.reset_faults()
    assert fresh_api.organizations_usage_get("acme-analytics").data_deleted_projects


def test_fault_admin_endpoint(fresh_server) -> None:
    root = fresh_server.root_url
    with admin_client(fresh_server) as admin:
        state = admin.post("/faults", json={"errors_5xx": 1, "slow_ms": 5}).json()
        assert state["errors_5xx"] == 1 and state["slow_ms"] == 5
        assert admin.get("/faults").json() == state
        bad = admin.post("/faults", json={"explode": 1})
        assert bad.status_code == 400 and "explode" in bad.json()["error"]
        with _client(fresh_server) as client:
            assert httpx.get(root + "/status").status_code == 200  # never faulted
            assert client.get("/organizations").status_code == 500
            assert client.get("/organizations").status_code == 200
        fresh_server.set_faults(malformed_json=4)
        reset = admin.delete("/faults").json()
    assert reset["malformed_json"] == 0
    assert reset["deleted_projects_key"] == "data_deleted_projects"


def test_admin_endpoints(fresh_server, fresh_api) -> None:
    with admin_client(fresh_server) as admin:
        _exercise_admin_endpoints(fresh_server, fresh_api, admin)


def _exercise_admin_endpoints(fresh_server, fresh_api, admin: httpx.Client) -> None:
    scenario = admin.get("/scenario").json()
    names = [o["name"] for o in scenario["organizations"]]
    assert "blue-harbor" in names and "other-team" in names
    blue = next(o for o in scenario["organizations"] if o["name"] == "blue-harbor")
    assert blue["over_budget"] and blue["current_period"] == {
        "start": "2026-11-20",
        "end": "2026-12-20",
    }
    assert scenario["credit_budgets"]["starter"] == 5000

    renamed = admin.post("/organizations/acme-analytics/rename", json={"new_name": "acme"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "acme"
    clash = admin.post("/organizations/acme/rename", json={"new_name": "blue-harbor"})
    assert clash.status_code == 400

    project = fresh_api.organizations_usage_get("acme").data_projects[0]
    url = f"/organizations/acme/projects/{project.project_id}/delete"
    assert admin.post(url).json()["project_id"] == project.project_id
    assert admin.post(url).status_code == 400
    assert admin.post("/organizations/acme/projects/nope/delete").status_code == 404

    added = admin.post("/organizations/acme/usage/today", json={"credits": 10.0})
    assert added.status_code == 200
    assert admin.post("/organizations/acme/usage/today", json={"credits": "x"}).status_code == 400

    totals = admin.get(
        "/totals", params={"organization": "acme", "start": "2026-11-01", "end": "2026-12-01"}
    ).json()
    assert totals["days"] == 30
    assert totals == fresh_server.totals("acme", date(2026, 11, 1), date(2026, 12, 1))
    assert project.project_id not in totals["projects"]
    usage = fresh_api.organizations_usage_get("acme")
    assert usage.data_organization[0].value == pytest.approx(totals["organization_total"])
    assert usage.data_deleted_projects[0].value == pytest.approx(totals["deleted_projects"])
    bad = admin.get("/totals", params={"organization": "acme", "start": "x", "end": "y"})
    assert bad.status_code == 400
    missing = admin.get(
        "/totals", params={"organization": "ghost", "start": "2026-01-01", "end": "2026-02-01"}
    )
    assert missing.status_code == 404


ADMIN_REQUESTS = [
    ("GET", "/faults"),
    ("POST", "/faults"),
    ("DELETE", "/faults"),
    ("POST", "/organizations/acme-analytics/rename"),
    ("POST", "/organizations/acme-analytics/projects/x/delete"),
    ("POST", "/organizations/acme-analytics/usage/today"),
    ("GET", "/totals"),
    ("GET", "/scenario"),
]


def test_admin_endpoints_do_not_exist_without_the_switch(server_factory) -> None:
    srv = server_factory(admin_endpoints=False, faults={"errors_5xx": 0})
    with admin_client(srv) as admin:  # even with the right token
        for method, path in ADMIN_REQUESTS:
            response = admin.request(method, path, json={"errors_5xx": 5})
            assert response.status_code == 404, (method, path)
    assert srv.fault_state()["errors_5xx"] == 0, "nothing was changed"
    with _client(srv) as client:
        assert client.get("/organizations").status_code == 200


def test_admin_endpoints_need_the_token(fresh_server) -> None:
    root = fresh_server.root_url + "/_emulator"
    # one client for every request (a new httpx client loads the CA bundle: ~50 ms of CPU each)
    with httpx.Client(timeout=10) as client:
        for headers in (
            {},
            {"Authorization": "Token wrong"},
            {"Authorization": "Token other-token"},
        ):
            for method, path in ADMIN_REQUESTS:
                response = client.request(
                    method, root + path, json={"errors_5xx": 5}, headers=headers
                )
                assert response.status_code == 401, (method, path, headers)
                assert "token" in response.json()["error"]
    assert fresh_server.fault_state()["errors_5xx"] == 0, "nothing was changed"
    with admin_client(fresh_server) as admin:
        assert admin.post("/faults", json={"errors_5xx": 1}).status_code == 200


def test_embedded_emulator_of_usage_etl_run_has_no_admin_endpoints(monkeypatch) -> None:
    from pipelines.commands.run_cmd import api_target

    monkeypatch.delenv("UBIOPS_API_HOST", raising=False)
    monkeypatch.delenv("UBIOPS_API_TOKEN", raising=False)
    with api_target() as api:
        host = str(api["host"]).removesuffix("/v2.1")
        token = api["token"]
        response = httpx.get(
            host + "/_emulator/scenario", headers={"Authorization": f"Token {token}"}
        )
        assert response.status_code == 404
        assert httpx.get(host + "/status").status_code == 200


def test_concurrent_requests(shared_server) -> None:
    import concurrent.futures

    with _client(shared_server) as client:

        def fetch(i: int) -> int:
            return client.get(
                "/organizations/delta-vision/usage", params={"interval": "day"}
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert set(pool.map(fetch, range(200))) == {200}
