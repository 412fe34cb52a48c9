"""Referee tests: organization user endpoints driven through the official ubiops SDK."""

from __future__ import annotations

from datetime import date

import pytest
import ubiops
from ubiops.exceptions import ApiException


def _ids(api, org: str) -> dict[str, str]:
    return {u.email: u.id for u in api.organization_users_list(org)}


def test_list_and_get(api) -> None:
    users = api.organization_users_list("acme-analytics")
    assert len(users) == 3
    for user in users:
        assert isinstance(user, ubiops.OrganizationUserList)
        assert isinstance(user.join_date, date)
        assert user.status == "active"
    one = api.organization_users_get("acme-analytics", users[1].id)
    assert one.to_dict() == users[1].to_dict()
    with pytest.raises(ApiException) as exc:
        api.organization_users_get("acme-analytics", "00000000-0000-4000-8000-000000000000")
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        api.organization_users_list("other-team")
    assert exc.value.status == 404


def test_create_update_delete_cycle(fresh_api) -> None:
    created = fresh_api.organization_users_create(
        "blue-harbor", ubiops.OrganizationUserCreate(email="new.person@example.com", admin=False)
    )
    assert isinstance(created, ubiops.OrganizationUserList)
    assert (created.email, created.admin, created.name, created.surname) == (
        "new.person@example.com",
        False,
        "New",
        "Person",
    )
    assert created.join_date == date(2026, 11, 28)
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_create(
            "blue-harbor", ubiops.OrganizationUserCreate(email="new.person@example.com")
        )
    assert exc.value.status == 400
    promoted = fresh_api.organization_users_update(
        "blue-harbor", created.id, ubiops.OrganizationUserUpdate(admin=True)
    )
    assert promoted.admin is True and promoted.id == created.id
    assert fresh_api.organization_users_delete("blue-harbor", created.id) is None
    assert created.id not in _ids(fresh_api, "blue-harbor").values()
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_delete("blue-harbor", created.id)
    assert exc.value.status == 404
    assert fresh_api.organizations_resource_usage("blue-harbor").users == 2


def test_last_admin_cannot_be_deleted_or_demoted(fresh_api) -> None:
    ids = _ids(fresh_api, "blue-harbor")
    me = ids["demo@example.com"]
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_delete("blue-harbor", me)
    assert exc.value.status == 400 and "last admin" in exc.value.get_body_message()
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_update(
            "blue-harbor", me, ubiops.OrganizationUserUpdate(admin=False)
        )
    assert exc.value.status == 400 and "last admin" in exc.value.get_body_message()
    # with a second admin the demotion is allowed
    other = ids["bo.harbor@example.com"]
    fresh_api.organization_users_update(
        "blue-harbor", other, ubiops.OrganizationUserUpdate(admin=True)
    )
    demoted = fresh_api.organization_users_update(
        "blue-harbor", me, ubiops.OrganizationUserUpdate(admin=False)
    )
    assert demoted.admin is False


def test_non_admin_member_is_forbidden(fresh_api, fresh_other_api) -> None:
    ids = _ids(fresh_api, "acme-analytics")
    target = ids["ana.lytics@example.com"]
    # a non-admin member may list, but not get/create/update/delete
    assert len(fresh_other_api.organization_users_list("acme-analytics")) == 3
    calls = [
        lambda: fresh_other_api.organization_users_get("acme-analytics", target),
        lambda: fresh_other_api.organization_users_create(
            "acme-analytics", ubiops.OrganizationUserCreate(email="x@example.com")
        ),
        lambda: fresh_other_api.organization_users_update(
            "acme-analytics", target, ubiops.OrganizationUserUpdate(admin=False)
        ),
        lambda: fresh_other_api.organization_users_delete("acme-analytics", target),
    ]
    for call in calls:
        with pytest.raises(ApiException) as exc:
            call()
        assert exc.value.status == 403
        assert "permission" in exc.value.get_body_message()


def test_user_errors(fresh_api) -> None:
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_create(
            "acme-analytics", ubiops.OrganizationUserCreate(email="not-an-email")
        )
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_create(
            "ghost-org", ubiops.OrganizationUserCreate(email="a@example.com")
        )
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        fresh_api.organization_users_update(
            "acme-analytics", "missing-user", ubiops.OrganizationUserUpdate(admin=True)
        )
    assert exc.value.status == 404
    # an existing platform user is added with its own identity
    added = fresh_api.organization_users_create(
        "blue-harbor", ubiops.OrganizationUserCreate(email="other@example.com", admin=False)
    )
    assert added.id in _ids(fresh_api, "acme-analytics").values()
