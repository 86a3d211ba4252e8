"""Resource-based policies: PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy
(and the ResourcePolicy a CreateTable may carry).

A table and each of its streams has its own policy slot, kept in the table's catalog entry
(``extra["ResourcePolicies"]``: "" for the table, "stream/<label>" for a stream) with the
RevisionId DynamoDB would give it, the epoch milliseconds of the change.  Policies are
stored and returned, never enforced: like provisioned throughput, they change no request's
outcome here.  A policy goes with its table when the table is deleted.
"""

from __future__ import annotations

import time

import orjson

from shardserver.errors import PolicyNotFoundException, ResourceNotFoundException, ValidationException
from shardserver.shard.catalog import ACCOUNT, REGION
from shardserver.shard.executor import operation
from shardserver.shard.executor.control import change_table_extra, split_arn
from shardserver.shard.executor.tables import Constraints, table_not_found

KEY = "ResourcePolicies"
MAX_POLICY_BYTES = 20480
NO_POLICY = "NO_POLICY"         # ExpectedRevisionId of a Put that must not replace a policy
_INVALID = "One or more parameter values were invalid: "


def checked_policy(policy: str) -> str:
    """A policy document, refused unless it is a JSON object within DynamoDB's size limit whose
    statements each say their Effect, in the words of DynamoDB's policy parser."""
    if len(policy.encode()) > MAX_POLICY_BYTES:
        raise ValidationException(f"{_INVALID}Maximum policy size of {MAX_POLICY_BYTES} bytes exceeded")
    invalid = f"{_INVALID}Invalid policy document: "
    try:
        document = orjson.loads(policy)
    except orjson.JSONDecodeError:
        raise ValidationException(invalid + "This policy contains invalid Json") from None
    if document is None:
        raise ValidationException(invalid + "This text appears not to be a policy")
    if not isinstance(document, dict):
        raise ValidationException(invalid + "This policy contains invalid Json")
    if not document:
        # The parser wants a member name where the object closes: the position after "}".
        lines = policy.rstrip().split("\n")
        raise ValidationException(invalid + f"Syntax error at position ({len(lines)},{len(lines[-1]) + 1})")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if isinstance(statements, list):
        if not statements:
            raise ValidationException(invalid + "Could not parse the policy: Statement is empty!")
        sids = set()
        for statement in statements:
            if not isinstance(statement, dict):
                continue
            if "Effect" not in statement:
                raise ValidationException(invalid + "Missing required field Effect")
            if "Resource" not in statement and "NotResource" not in statement:
                raise ValidationException(invalid + "Missing required field Resource")
            if statement.get("Sid") is not None:
                if statement["Sid"] in sids:
                    raise ValidationException(invalid + "The Statement Ids in the policy are not unique")
                sids.add(statement["Sid"])
    return policy


def new_revision(previous: str | None = None) -> str:
    revision = int(time.time() * 1000)
    if previous is not None and previous.isdigit() and revision <= int(previous):
        revision = int(previous) + 1        # two changes in one millisecond stay ordered
    return str(revision)


def initial_policies(policy: str) -> dict:
    """The policy slots of a table created with a ResourcePolicy."""
    return {"": {"Policy": checked_policy(policy), "RevisionId": new_revision()}}


def _target(svc, arn) -> tuple:
    """(table schema, policy slot) of a ResourceArn: a table's or one of its streams'."""
    constraints = Constraints()
    if constraints.required(arn, "resourceArn"):
        constraints.length(arn, "resourceArn", 1, 1283)
    constraints.check()
    if not arn.startswith("arn:"):
        raise ValidationException(f"{_INVALID}ARNs must start with 'arn:': {arn}")
    parts = split_arn(arn)
    if parts is None or parts[1] != "dynamodb" or not parts[4].startswith("table/"):
        raise ValidationException(f"{_INVALID}Provided Arn is not a DynamoDB resource arn: {arn}")
    partition, _, region, account, resource = parts
    if partition != "aws" or region != REGION:
        raise ValidationException(f"{_INVALID}Invalid resource Arn: {arn}")
    if account != ACCOUNT:
        raise ValidationException("This action is only supported by accounts that match the resource "
                                  "owner\u2019s account.")
    path = resource.split("/")
    if len(path) == 4 and path[2] == "index" and path[3]:
        raise ValidationException(f"{_INVALID}Invalid resource arn provided, only table or stream is accepted. "
                                  f"Provided resource arn: {arn}")
    if not path[1] or len(path) not in (2, 4) or (len(path) == 4 and (path[2] != "stream" or not path[3])):
        raise ValidationException(f"{_INVALID}Provided Arn is not a DynamoDB resource arn: {arn}")
    name = path[1]
    schema = svc.catalog.tables.get(name)
    if schema is None:
        raise table_not_found(name)
    if len(path) == 2:
        return schema, ""
    label = path[3]
    if not any(stream["label"] == label for stream in schema.streams):
        raise ResourceNotFoundException(f"Requested resource not found: Stream: {label} not found for "
                                        f"Table: {name}")
    return schema, f"stream/{label}"


def _check_expected(schema, expected: str | None, current: dict | None) -> None:
    """DynamoDB's PolicyNotFoundException for an ExpectedRevisionId the slot does not have."""
    if expected is None:
        return
    prefix = "Resource-based policy not found for the provided ResourceArn: "
    if expected == NO_POLICY:
        if current is not None:
            raise PolicyNotFoundException(
                f"{prefix}Requested policy update expecting none to be present for table {schema.name}, "
                f"but a policy exists with revision id {current['RevisionId']}.")
        return
    if current is None:
        raise PolicyNotFoundException(
            f"{prefix}Requested update for policy with revision id {expected}, but no policy is attached "
            f"to target table {schema.name}.")
    if current["RevisionId"] != expected:
        raise PolicyNotFoundException(
            f"{prefix}Requested update for policy with revision id {expected}, but the policy associated "
            f"to target table {schema.name} has revision id {current['RevisionId']}.")


@operation("PutResourcePolicy")
async def put_resource_policy(svc, request: dict) -> bytes:
    policy, expected = request.get("Policy"), request.get("ExpectedRevisionId")
    constraints = Constraints()
    constraints.required(request.get("ResourceArn"), "resourceArn")
    constraints.required(policy, "policy")
    constraints.length(expected, "expectedRevisionId", 1, 255)
    constraints.check()
    schema, slot = _target(svc, request["ResourceArn"])
    checked_policy(policy)
    document = orjson.loads(policy)
    answer = {}

    def compute(policies):
        policies = dict(policies or {})
        current = policies.get(slot)
        _check_expected(schema, expected, current)
        if current is not None and orjson.loads(current["Policy"]) == document:
            # The same document again: DynamoDB keeps it and its RevisionId.
            answer["revision"] = current["RevisionId"]
            return policies
        answer["revision"] = new_revision(current["RevisionId"] if current else None)
        policies[slot] = {"Policy": policy, "RevisionId": answer["revision"]}
        return policies

    await change_table_extra(svc, schema, KEY, compute)
    return orjson.dumps({"RevisionId": answer["revision"]})


@operation("GetResourcePolicy")
async def get_resource_policy(svc, request: dict) -> bytes:
    schema, slot = _target(svc, request.get("ResourceArn"))
    current = schema.extra.get(KEY, {}).get(slot)
    if current is None:
        raise PolicyNotFoundException("Resource-based policy not found for the provided ResourceArn: "
                                      f"{request['ResourceArn']}")
    return orjson.dumps({"Policy": current["Policy"], "RevisionId": current["RevisionId"]})


@operation("DeleteResourcePolicy")
async def delete_resource_policy(svc, request: dict) -> bytes:
    expected = request.get("ExpectedRevisionId")
    constraints = Constraints()
    constraints.required(request.get("ResourceArn"), "resourceArn")
    constraints.length(expected, "expectedRevisionId", 1, 255)
    constraints.check()
    schema, slot = _target(svc, request["ResourceArn"])
    answer = {}

    def compute(policies):
        policies = dict(policies or {})
        current = policies.get(slot)
        _check_expected(schema, expected, current)
        if current is not None:
            answer["revision"] = current["RevisionId"]
            del policies[slot]
        return policies or None

    await change_table_extra(svc, schema, KEY, compute)
    # DynamoDB echoes the RevisionId of the policy removed; deleting no policy is a no-op.
    return orjson.dumps({"RevisionId": answer["revision"]}) if "revision" in answer else b"{}"
