"""Routing: which channels an organization's alerts go to.

The rule is in the quota file (:meth:`insights.quotas.QuotaConfig.channels_for`: the
organization's ``channels``, else its subscription's, else ``default``'s, else the channels no
organization or subscription route names -- every channel when there are no routes -- so a
channel named in one organization's route never receives other organizations' alerts);
:func:`alert_routes` applies it to candidate alerts, looking up each organization's name and
subscription in the ``organizations`` table, for :meth:`alerting.store.AlertStore.sync`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from insights.quotas import QuotaConfig


def alert_routes(
    config: QuotaConfig, organizations: pd.DataFrame
) -> Callable[[dict[str, Any]], list[str]]:
    """candidate alert row -> the channels its alert goes to."""
    known = {
        str(r["organization_id"]): (r.get("organization_name"), r.get("subscription"))
        for r in organizations.to_dict("records")
    }

    def route(candidate: dict[str, Any]) -> list[str]:
        org = str(candidate["organization_id"])
        name, subscription = known.get(org, (candidate.get("organization_name"), None))
        return config.channels_for(org, name, subscription)

    return route
