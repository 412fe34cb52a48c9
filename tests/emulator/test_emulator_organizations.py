"""Referee tests: organization endpoints driven through the official ubiops SDK."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
import ubiops
from ubiops.exceptions import ApiException

from warehouse.schema import RESOURCE_NAMES


def _error(exc: pytest.ExceptionInfo[ApiException]) -> str:
    return exc.value.get_body_message()


def test_list_returns_only_callers_organizations(api, other_api) -> None:
    orgs = api.organizations_list()
    names = [o.name for o in orgs]
    assert names == [
        "acme-analytics",
        "blue-harbor",
        "cobalt-labs",
        "delta-vision",
        "ember-free",
        "fjord-ml",
    ]
    assert "other-team" not in names
    for org in orgs:
        assert isinstance(org, ubiops.OrganizationList)
        assert isinstance(org.id, str) and len(org.id) == 36
        assert isinstance(org.creation_date, datetime)
        assert org.status == "active"
        assert isinstance(org.two_factor_authentication_forced, bool)
    other = sorted(o.name for o in other_api.organizations_list())
    assert other == ["acme-analytics", "other-team"]


def test_get_detail_and_visibility(api, other_api) -> None:
    detail = api.organizations_get("cobalt-labs")
    assert isinstance(detail, ubiops.OrganizationDetail)
    assert detail.subscription == "enterprise"
    assert isinstance(detail.overage_usage, bool)
    with pytest.raises(ApiException) as exc:
        api.organizations_get("other-team")
    assert exc.value.status == 404
    assert "not found" in _error(exc)
    with pytest.raises(ApiException) as exc:
        api.organizations_get("no-such-org")
    assert exc.value.status == 404
    assert other_api.organizations_get("other-team").name == "other-team"


def test_unauthenticated_and_bad_token(shared_server, api_for) -> None:
    for token in (None, "wrong-token"):
        client = api_for(shared_server.base_url, token)
        with pytest.raises(ApiException) as exc:
            client.organizations_list()
        assert exc.value.status == 401
        assert _error(exc)
    headers = {"Authorization": "Bearer " + shared_server.token}
    assert httpx.get(shared_server.base_url + "/organizations", headers=headers).status_code == 200


def test_create_organization_and_creator_is_admin(fresh_api) -> None:
    created = fresh_api.organizations_create(
        ubiops.OrganizationCreate(
            name="new-org-1", subscription="starter", subscription_end_date="2028-01-01"
        )
    )
    assert isinstance(created, ubiops.OrganizationList)
    assert created.name == "new-org-1"
    assert created.status == "active"
    members = fresh_api.organization_users_list("new-org-1")
    assert [(m.email, m.admin) for m in members] == [("demo@example.com", True)]
    assert fresh_api.organizations_get("new-org-1").subscription == "starter"
    assert "new-org-1" in [o.name for o in fresh_api.organizations_list()]
    free = fresh_api.organizations_create(ubiops.OrganizationCreate(name="f", subscription="free"))
    assert free.name == "f"
    usage = fresh_api.organizations_usage_get("new-org-1")
    assert usage.data_projects == [] and usage.data_deleted_projects[0].value == 0.0
    assert fresh_api.organizations_resource_usage("new-org-1").projects == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "Bad-Name", "subscription": "free"}, "lowercase"),
        ({"name": "1abc", "subscription": "free"}, "lowercase"),
        ({"name": "has_underscore", "subscription": "free"}, "lowercase"),
        ({"name": "acme-analytics", "subscription": "free"}, "already exists"),
        ({"name": "other-team", "subscription": "free"}, "already exists"),
        (
            {"name": "free-end", "subscription": "free", "subscription_end_date": "2027-01-01"},
            "free",
        ),
        ({"name": "no-end", "subscription": "starter"}, "end date"),
        ({"name": "no-sub"}, "Subscription"),
        (
            {"name": "bad-sub", "subscription": "gold", "subscription_end_date": "2027-01-01"},
            "gold",
        ),
    ],
)
def test_create_organization_rules(fresh_api, body, fragment) -> None:
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_create(ubiops.OrganizationCreate(**body))
    assert exc.value.status == 400
    assert fragment in _error(exc)


def test_create_rejects_long_name_and_bad_json(fresh_server) -> None:
    headers = {"Authorization": "Token " + fresh_server.token}
    url = fresh_server.base_url + "/organizations"
    response = httpx.post(url, headers=headers, json={"name": "a" * 65, "subscription": "free"})
    assert response.status_code == 400
    assert "64" in response.json()["error"]
    response = httpx.post(url, headers=headers, content=b'{"name": ', timeout=5)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid JSON in request body."}
    ok = httpx.post(url, headers=headers, json={"name": "a" * 64, "subscription": "free"})
    assert ok.status_code == 201
    assert set(ok.json()) == {
        "id",
        "name",
        "creation_date",
        "status",
        "two_factor_authentication_forced",
    }


def test_update_renames_and_keeps_id(fresh_api) -> None:
    before = fresh_api.organizations_get("acme-analytics")
    updated = fresh_api.organizations_update(
        "acme-analytics", ubiops.OrganizationUpdate(name="acme-renamed")
    )
    assert isinstance(updated, ubiops.OrganizationDetail)
    assert (updated.id, updated.name) == (before.id, "acme-renamed")
    assert fresh_api.organizations_get("acme-renamed").id == before.id
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_get("acme-analytics")
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_update(
            "acme-renamed", ubiops.OrganizationUpdate(name="cobalt-labs")
        )
    assert exc.value.status == 400
    flag = fresh_api.organizations_update(
        "acme-renamed", ubiops.OrganizationUpdate(two_factor_authentication_forced=True)
    )
    assert flag.two_factor_authentication_forced is True


def test_update_subscription_rules(fresh_api) -> None:
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_update(
            "ember-free",
            ubiops.OrganizationUpdate(subscription="starter", subscription_start_date="2026-12-01"),
        )
    assert exc.value.status == 400 and "end date" in _error(exc)
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_update(
            "ember-free", ubiops.OrganizationUpdate(subscription_end_date="2027-01-01")
        )
    assert exc.value.status == 400 and "free" in _error(exc)
    changed = fresh_api.organizations_update(
        "ember-free",
        ubiops.OrganizationUpdate(
            subscription="starter",
            subscription_start_date="2026-11-10",
            subscription_end_date="2027-11-10",
        ),
    )
    assert changed.subscription == "starter"
    period = fresh_api.organizations_usage_get("ember-free").data_organization
    assert period[0].start_date.day == 10


def test_update_forbidden_for_non_admin_and_unknown(fresh_api, fresh_other_api) -> None:
    with pytest.raises(ApiException) as exc:
        fresh_other_api.organizations_update("acme-analytics", ubiops.OrganizationUpdate(name="x"))
    assert exc.value.status == 403
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_update("nope", ubiops.OrganizationUpdate(name="x"))
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        fresh_api.organizations_update("acme-analytics", ubiops.OrganizationUpdate(name="Bad"))
    assert exc.value.status == 400


def test_resource_usage(api, other_api) -> None:
    usage = api.organizations_resource_usage("delta-vision")
    assert isinstance(usage, ubiops.ResourceUsage)
    assert usage.projects == 24
    assert usage.deployments == 96
    for field in RESOURCE_NAMES:  # every count the warehouse stores
        assert isinstance(getattr(usage, field), int)
    acme = api.organizations_resource_usage("acme-analytics")
    assert acme.projects == 5  # one of six projects is deleted
    assert acme.users == 3
    assert other_api.organizations_resource_usage("acme-analytics").projects == 5
    with pytest.raises(ApiException) as exc:
        api.organizations_resource_usage("other-team")
    assert exc.value.status == 404


def test_both_prefixes(shared_server, api_for) -> None:
    v2 = api_for(shared_server.root_url + "/v2", shared_server.token)
    v21 = api_for(shared_server.root_url + "/v2.1", shared_server.token)
    assert [o.id for o in v2.organizations_list()] == [o.id for o in v21.organizations_list()]
    assert (
        v2.organizations_usage_get("fjord-ml").to_dict()
        == v21.organizations_usage_get("fjord-ml").to_dict()
    )
    for path in ("/status", "/v2/status", "/v2.1/status"):
        response = httpx.get(shared_server.root_url + path)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    unknown = httpx.get(shared_server.root_url + "/v3/organizations")
    assert unknown.status_code == 404 and "error" in unknown.json()
