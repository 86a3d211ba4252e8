"""Resource-based policies: PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy
(and the ResourcePolicy a CreateTable may carry).

A table and each of its streams has its own policy slot, kept in the table's catalog entry
(``extra["ResourcePolicies"]``: "" for the table, "stream/<label>" for a stream) with the
RevisionId DynamoDB would give it, the epoch milliseconds of the change.  Policies are
stored in DynamoDB's canonical form and returned so, never enforced: like provisioned throughput, they change no request's
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


def checked_policy(policy: str) -> dict:
    """A policy document, refused unless it is a JSON object within DynamoDB's size limit whose
    statements each say their Effect, in the words of DynamoDB's policy parser; the document
    answered is DynamoDB's canonical form of it (see ``canonical_document``)."""
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
    document = canonical_document(document)
    for statement in document.get("Statement") or ():
        if isinstance(statement, dict) and statement.get("Effect") == "Allow" and "Condition" not in statement \
                and _grants_everyone(statement.get("Principal")):
            # DynamoDB's guardrail against public tables, not IAM syntax.
            raise ValidationException("Resource-based policy grants unbounded access in one or more elements. "
                                      "Please revise the policy to ensure least-privilege form of access")
    return document


_TOP_ORDER = ("Version", "Id", "Statement")
_STATEMENT_ORDER = ("Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
                    "Condition")
_DEFAULT_VERSION = "2008-10-17"       # IAM's, for a document that names none


def _ordered(members: dict, order: tuple) -> dict:
    out = {k: members[k] for k in order if k in members}
    out.update((k, v) for k, v in members.items() if k not in out)
    return out


def _one_or_many(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _principal(principal):
    """An account id becomes its root ARN, the same principal named twice is named once."""
    if not isinstance(principal, dict):
        return principal
    out = {}
    for kind, names in principal.items():
        if kind == "AWS":
            listed = names if isinstance(names, list) else [names]
            expanded = [f"arn:aws:iam::{n}:root" if isinstance(n, str) and len(n) == 12 and n.isdigit() else n
                        for n in listed]
            unique = [n for i, n in enumerate(expanded) if n not in expanded[:i]]
            names = unique if isinstance(names, list) and len(unique) > 1 else unique[0] if unique else names
        out[kind] = _one_or_many(names)
    return out


def _grants_everyone(principal) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        names = principal.get("AWS")
        return names == "*" or (isinstance(names, list) and "*" in names)
    return False


def canonical_document(document: dict) -> dict:
    """A policy as DynamoDB keeps and answers it: members in IAM's order (Version, Statement;
    Sid, Effect, Principal, Action, Resource, Condition), a lone Statement object as a list,
    one-element Action and Resource lists as strings, an Effect's case fixed, account ids in
    principals as root ARNs.  Two documents with one canonical form are the same policy."""
    document = _ordered(document, _TOP_ORDER)
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if isinstance(statements, list):
        canonical = []
        for statement in statements:
            if isinstance(statement, dict):
                statement = dict(statement)
                effect = statement.get("Effect")
                if isinstance(effect, str) and effect.lower() in ("allow", "deny"):
                    statement["Effect"] = effect.capitalize()
                for member in ("Principal", "NotPrincipal"):
                    if member in statement:
                        statement[member] = _principal(statement[member])
                for member in ("Action", "NotAction", "Resource", "NotResource"):
                    if member in statement:
                        statement[member] = _one_or_many(statement[member])
                statement = _ordered(statement, _STATEMENT_ORDER)
            canonical.append(statement)
        document["Statement"] = canonical
    return document


def stored_policy(document: dict, revision: str) -> dict:
    """A policy slot: the canonical document as GetResourcePolicy answers it (with IAM's default
    Version filled in), and the document as sent, which is what a later Put is compared with:
    DynamoDB takes a document without a Version and one naming 2008-10-17 for different ones."""
    shown = document if "Version" in document else {"Version": _DEFAULT_VERSION, **document}
    return {"Policy": orjson.dumps(shown).decode(), "Sent": orjson.dumps(document).decode(), "RevisionId": revision}


def _sent_of(slot: dict) -> str:
    # Slots stored before "Sent" was kept: their Policy is the document as sent.
    return slot.get("Sent") or orjson.dumps(canonical_document(orjson.loads(slot["Policy"]))).decode()


def new_revision(previous: str | None = None) -> str:
    revision = int(time.time() * 1000)
    if previous is not None and previous.isdigit() and revision <= int(previous):
        revision = int(previous) + 1        # two changes in one millisecond stay ordered
    return str(revision)


def initial_policies(policy: str) -> dict:
    """The policy slots of a table created with a ResourcePolicy."""
    return {"": stored_policy(checked_policy(policy), new_revision())}


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
    document = checked_policy(policy)
    sent = orjson.dumps(document).decode()
    answer = {}

    def compute(policies):
        policies = dict(policies or {})
        current = policies.get(slot)
        _check_expected(schema, expected, current)
        if current is not None and _sent_of(current) == sent:
            # The same policy again (however spaced or ordered): DynamoDB keeps it and its RevisionId.
            answer["revision"] = current["RevisionId"]
            return policies
        answer["revision"] = new_revision(current["RevisionId"] if current else None)
        policies[slot] = stored_policy(document, answer["revision"])
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
