"""schemathesis hooks of scripts/api-contract.sh (loaded via SCHEMATHESIS_HOOKS).

The run authenticates with one admin key; its id is in REVAER_CONTRACT_KEY_ID.
schemathesis reuses values from earlier answers (the key list among them), so
it would rotate or revoke that very key, and every later request would be
answered 401: how much of the API a run reaches would depend on when that
happened. A request that names the run's own key is sent for a key id that
does not exist instead (answered 404, still checked like any other).
"""

from __future__ import annotations

import os

import schemathesis

KEY_ID = os.environ.get("REVAER_CONTRACT_KEY_ID", "")
# Key ids are 12 hex digits; the store never issues this one in a fresh run.
NO_SUCH_KEY_ID = "000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if (
        KEY_ID
        and params
        and case.operation.path.startswith("/v1/keys/")
        and params.get("id") == KEY_ID
    ):
        params["id"] = NO_SUCH_KEY_ID
