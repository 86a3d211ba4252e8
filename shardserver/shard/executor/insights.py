"""CloudWatch Contributor Insights settings: DescribeContributorInsights,
UpdateContributorInsights, ListContributorInsights.

The setting is kept per table and per global secondary index, in the table's catalog
entry (``extra["ContributorInsights"]``, keyed by index name, "" for the table), and
reported as DynamoDB reports it: an ENABLE answers ENABLING and the setting reads ENABLED
from then on (a DISABLE: DISABLING, then DISABLED), since nothing here has to be set up.
This server has no CloudWatch: no Contributor Insights rule and no graph data exist, so
no ContributorInsightsRuleList is given.
"""

from __future__ import annotations

import base64
import binascii
import time

import orjson

from shardserver.errors import ResourceNotFoundException, ValidationException
from shardserver.shard.executor import operation
from shardserver.shard.executor.control import change_table_extra, table_named
from shardserver.shard.executor.tables import Constraints

KEY = "ContributorInsights"
ACTIONS = ("ENABLE", "DISABLE")
MODES = ("THROTTLED_KEYS", "ACCESSED_AND_THROTTLED_KEYS")        # in the order DynamoDB's messages list them
DEFAULT_MODE = "ACCESSED_AND_THROTTLED_KEYS"
MAX_RESULTS = 100


def _index(schema, index_name):
    """The GSI definition named, or ResourceNotFoundException (an LSI has no insights)."""
    for definition in schema.global_indexes:
        if definition["IndexName"] == index_name:
            return definition
    raise ResourceNotFoundException(f"Requested resource not found: Index: {index_name} not found "
                                    f"for table: {schema.name}")


def _setting(schema, index_name: str) -> dict | None:
    """The stored setting of the table ("") or of one of its GSIs, if it was ever changed."""
    index_id = None
    if index_name:
        live = next((d for d in schema.global_indexes if d["IndexName"] == index_name), None)
        if live is None:
            return None
        index_id = live.get("IndexId")
    return _for_index(schema.extra.get(KEY), index_name, index_id)


def _for_index(settings: dict | None, index_name: str, index_id) -> dict | None:
    """A setting names the index id it was made for, so a GSI deleted and created again under
    the same name starts DISABLED, as a new index does in DynamoDB."""
    setting = (settings or {}).get(index_name)
    if setting is None or setting.get("IndexId") != index_id:
        return None
    return setting


def _described(schema, index_name: str) -> dict:
    response = {"TableName": schema.name}
    if index_name:
        response["IndexName"] = index_name
    setting = _setting(schema, index_name)
    if setting is None:
        # Never configured: DynamoDB gives the status alone.
        response["ContributorInsightsStatus"] = "DISABLED"
        return response
    response["ContributorInsightsStatus"] = setting["Status"]
    response["ContributorInsightsMode"] = setting["Mode"]
    response["LastUpdateDateTime"] = setting["Updated"]
    return response


def _check_index_name(constraints: Constraints, request: dict) -> None:
    name = request.get("IndexName")
    if isinstance(name, str) and not 3 <= len(name) <= 255:
        # Contributor Insights' own words, not the length rule's.
        raise ValidationException("IndexName must be at least 3 characters long and at most 255 characters long")
    constraints.name(name, "indexName")


@operation("DescribeContributorInsights")
async def describe_contributor_insights(svc, request: dict) -> bytes:
    constraints = Constraints()
    constraints.required(request.get("TableName"), "tableName")
    _check_index_name(constraints, request)
    constraints.check()
    schema = table_named(svc, request["TableName"])
    index_name = request.get("IndexName") or ""
    if index_name:
        _index(schema, index_name)
    return orjson.dumps(_described(schema, index_name))


@operation("UpdateContributorInsights")
async def update_contributor_insights(svc, request: dict) -> bytes:
    action, mode = request.get("ContributorInsightsAction"), request.get("ContributorInsightsMode")
    constraints = Constraints()
    constraints.required(request.get("TableName"), "tableName")
    _check_index_name(constraints, request)
    if constraints.required(action, "contributorInsightsAction"):
        constraints.enum(action, "contributorInsightsAction", ACTIONS)
    constraints.enum(mode, "contributorInsightsMode", MODES)
    constraints.check()
    schema = table_named(svc, request["TableName"])
    index_name = request.get("IndexName") or ""
    index_id = None
    if index_name:
        definition = _index(schema, index_name)
        if definition.get("IndexStatus", "ACTIVE") != "ACTIVE" and action == "ENABLE":
            raise ValidationException("Table or Index is not in a valid state to update Key Access Insights: "
                                      "IndexStatus must be ACTIVE to enable ContributorInsights.")
        index_id = definition.get("IndexId")
    answer = {}

    def compute(settings):
        current = _for_index(settings, index_name, index_id)
        settings = dict(settings or {})
        wanted_mode = mode or DEFAULT_MODE
        if action == "ENABLE":
            if current is not None and current["Status"] == "ENABLED" and current["Mode"] == wanted_mode:
                answer.update(status="ENABLED", mode=wanted_mode)     # already so: nothing changes
                return settings or None
            answer.update(status="ENABLING", mode=wanted_mode)
            settings[index_name] = {"Status": "ENABLED", "Mode": wanted_mode, "Updated": round(time.time(), 3),
                                    "IndexId": index_id}
        else:
            if current is None or current["Status"] == "DISABLED":
                answer.update(status="DISABLED", mode=current["Mode"] if current else None)
                return settings or None
            answer.update(status="DISABLING", mode=current["Mode"])
            settings[index_name] = {**current, "Status": "DISABLED", "Updated": round(time.time(), 3)}
        return settings

    await change_table_extra(svc, schema, KEY, compute)
    response = {"TableName": schema.name}
    if index_name:
        response["IndexName"] = index_name
    response["ContributorInsightsStatus"] = answer["status"]
    if answer["mode"] is not None:
        response["ContributorInsightsMode"] = answer["mode"]
    return orjson.dumps(response)


def _encode_token(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode()


def _decode_token(token: str) -> tuple[str, str]:
    try:
        table, index = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(table, str) and isinstance(index, str):
            return table, index
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise ValidationException(f"Invalid NextToken: {token}")


@operation("ListContributorInsights")
async def list_contributor_insights(svc, request: dict) -> bytes:
    limit = request.get("MaxResults")
    constraints = Constraints()
    constraints.length(request.get("TableName"), "tableName", 1, 1024)
    constraints.value(limit, "maxResults", 1, MAX_RESULTS)
    constraints.check()
    if request.get("TableName") is not None:
        schemas = [table_named(svc, request["TableName"])]
    else:
        schemas = [svc.catalog.tables[name] for name in sorted(svc.catalog.tables)]
    token = request.get("NextToken")
    after = _decode_token(token) if token is not None else None
    summaries: list[tuple[tuple[str, str], dict]] = []
    for schema in schemas:
        # The table first, then its GSIs by name (the order NextToken resumes in);
        # DISABLED entries are not listed, as in DynamoDB.
        for index_name in [""] + sorted(d["IndexName"] for d in schema.global_indexes):
            setting = _setting(schema, index_name)
            if setting is None or setting["Status"] == "DISABLED":
                continue
            summary = {"TableName": schema.name}
            if index_name:
                summary["IndexName"] = index_name
            summary["ContributorInsightsStatus"] = setting["Status"]
            summary["ContributorInsightsMode"] = setting["Mode"]
            summaries.append(((schema.name, index_name), summary))
    if after is not None:
        summaries = [(position, summary) for position, summary in summaries if position > after]
    limit = limit or MAX_RESULTS
    page = summaries[:limit]
    response = {"ContributorInsightsSummaries": [summary for _, summary in page]}
    if len(summaries) > limit:
        response["NextToken"] = _encode_token(page[-1][0])
    return orjson.dumps(response)
