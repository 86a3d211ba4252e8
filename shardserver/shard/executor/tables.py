"""Table operations: CreateTable, DeleteTable, DescribeTable, ListTables, and friends.

Schema changes run on the catalog coordinator (shard 0): it validates,
writes catalog.json atomically, and broadcasts the change so every shard
knows the table before the client hears back.  Reads of the catalog
(DescribeTable, ListTables) are answered from the acceptor's own copy.
"""

from __future__ import annotations

import re
import unicodedata

import orjson

from shardserver.errors import (LimitExceededException, ResourceInUseException,
                                ResourceNotFoundException, ValidationException)
from shardserver.shard import streams
from shardserver.shard.catalog import WARM_THROUGHPUT_BASELINE, TableSchema, new_table_id, now
from shardserver.shard.executor import operation

TABLE_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]+\Z")
MAX_TABLES = 2500
NO_DEFINITION = "Invalid KeySchema: Some index key attribute have no definition"


MAX_CONSTRAINT_ERRORS = 10     # DynamoDB names at most ten broken constraints in one answer


def constraint_error(errors: list[str]) -> ValidationException:
    errors = errors[:MAX_CONSTRAINT_ERRORS]
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return ValidationException(f"{count} validation {noun} detected: " + "; ".join(errors))


class Constraints:
    """A request's member constraints, checked in order and refused together, as DynamoDB's
    model validation reports them ("N validation errors detected: Value ... at ...")."""

    def __init__(self):
        self.problems: list[str] = []

    def _add(self, value, field: str, rule: str) -> None:
        shown = "null" if value is None else f"'{value}'"
        self.problems.append(f"Value {shown} at '{field}' failed to satisfy constraint: {rule}")

    def required(self, value, field: str) -> bool:
        if value is None:
            self._add(None, field, "Member must not be null")
            return False
        return True

    def length(self, value, field: str, low: int = 0, high: int | None = None) -> None:
        if value is None:
            return
        if len(value) < low:
            self._add(value, field, f"Member must have length greater than or equal to {low}")
        elif high is not None and len(value) > high:
            self._add(value, field, f"Member must have length less than or equal to {high}")

    def name(self, value, field: str, pattern_first: bool = False) -> None:
        """A table or index name: 3 to 255 characters of [a-zA-Z0-9_.-].  DynamoDB names the
        pattern before the length for some members (a backup's name, ListTables' start)."""
        if value is None:
            return
        if pattern_first:
            self.pattern(value, field, TABLE_NAME_RE, "[a-zA-Z0-9_.-]+")
        if len(value) < 3:
            self._add(value, field, "Member must have length greater than or equal to 3")
        if len(value) > 255:
            self._add(value, field, "Member must have length less than or equal to 255")
        if not pattern_first:
            self.pattern(value, field, TABLE_NAME_RE, "[a-zA-Z0-9_.-]+")

    def pattern(self, value, field: str, regex: re.Pattern, shown: str) -> None:
        if value is not None and not regex.match(value):
            self._add(value, field, f"Member must satisfy regular expression pattern: {shown}")

    def enum(self, value, field: str, allowed: tuple) -> None:
        if value is not None and value not in allowed:
            self._add(value, field, f"Member must satisfy enum value set: [{', '.join(allowed)}]")

    def value(self, value, field: str, low: int | None = None, high: int | None = None) -> None:
        if value is None:
            return
        if low is not None and value < low:
            self._add(value, field, f"Member must have value greater than or equal to {low}")
        elif high is not None and value > high:
            self._add(value, field, f"Member must have value less than or equal to {high}")

    def check(self) -> None:
        if self.problems:
            raise constraint_error(self.problems)


def table_name_errors(name, field: str = "tableName", pattern_first: bool = False) -> list[str]:
    """The constraint problems of a table (or index, or backup) name member."""
    constraints = Constraints()
    if isinstance(name, str):
        constraints.name(name, field, pattern_first)
    else:
        constraints.required(None, field)
    return constraints.problems


def check_table_name(name, field: str = "tableName") -> str:
    errors = table_name_errors(name, field)
    if errors:
        raise constraint_error(errors)
    return name


def throughput_constraints(constraints: Constraints, throughput, field: str, members: tuple[str, str]) -> None:
    """A ProvisionedThroughput's member rules (each unit required and at least 1), in ``members``'
    order, the order DynamoDB reports them in for that request."""
    if throughput is None:
        return
    for member in members:
        path = f"{field}.{member[0].lower()}{member[1:]}"
        if constraints.required(throughput.get(member), path):
            constraints.value(throughput[member], path, low=1)


def table_of(svc, request: dict):
    """The schema of the request's TableName, or ResourceNotFoundException."""
    name = request.get("TableName")
    schema = svc.catalog.tables.get(name) if isinstance(name, str) else None
    if schema is None:
        if name == "":
            # The item operations take a table name or ARN (at least 1 character): an empty
            # name fails only that, before the table-name rules are looked at.
            raise constraint_error(["Value '' at 'tableName' failed to satisfy constraint: "
                                    "Member must have length greater than or equal to 1"])
        check_table_name(name)
        check_expressions_alone(request)
        raise ResourceNotFoundException("Requested resource not found")
    return schema


def check_expressions_alone(request: dict) -> None:
    """What DynamoDB finds wrong in a request's expressions before it looks for the table:
    their syntax, and what binding them to ExpressionAttributeNames/Values reveals
    (undefined placeholders, overlapping update paths)."""
    from shardserver.shard import expressions as ex
    from shardserver.shard.expressions.update import bind_update
    texts = [(field, request.get(field)) for field in (
        "KeyConditionExpression", "ConditionExpression", "FilterExpression", "UpdateExpression",
        "ProjectionExpression")]
    texts = [(field, text) for field, text in texts if isinstance(text, str)]
    if not texts:
        return
    names, values = request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues")
    try:
        context = ex.ExpressionContext(names, values)
    except ValidationException:
        context = None
    for field, text in texts:
        if field == "UpdateExpression":
            parsed = ex.parse_update(text)
            if context is not None:
                bind_update(parsed, context)
        elif field == "ProjectionExpression":
            ex.parse_projection(text)
        elif field == "KeyConditionExpression":
            ex.parse_key_condition(text)
        else:
            ex.parse_condition(text, field)


def table_not_found(name: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"Requested resource not found: Table: {name} not found")


def existing_table(svc, request: dict) -> TableSchema:
    """The table the request's TableName names, checked, or ResourceNotFoundException."""
    name = check_table_name(request.get("TableName"))
    schema = svc.catalog.tables.get(name)
    if schema is None:
        raise table_not_found(name)
    return schema


def key_schema_elements(key_schema, field: str, most: int = 2) -> tuple[list[str], list[str]]:
    """Attribute names and key types of a KeySchema (a table's or an index's; a GSI's multi-attribute
    key has up to ``most`` elements), shape-checked."""
    if not isinstance(key_schema, list):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if not key_schema:
        raise constraint_error([f"Value '[]' at '{field}' failed to satisfy constraint: "
                                "Member must have length greater than or equal to 1"])
    if len(key_schema) > most:
        shown = ", ".join(f"KeySchemaElement(attributeName={e.get('AttributeName')}, keyType={e.get('KeyType')})"
                          if isinstance(e, dict) else "null" for e in key_schema)
        raise constraint_error([f"Value '[{shown}]' at '{field}' failed to satisfy constraint: "
                                f"Member must have length less than or equal to {most}"])
    names, kinds = [], []
    for i, element in enumerate(key_schema, 1):
        if not isinstance(element, dict) or not isinstance(element.get("AttributeName"), str):
            raise constraint_error([f"Value null at '{field}.{i}.member.attributeName' failed to satisfy "
                                    "constraint: Member must not be null"])
        kind = element.get("KeyType")
        if kind not in ("HASH", "RANGE"):
            raise constraint_error([f"Value '{kind}' at '{field}.{i}.member.keyType' failed to satisfy "
                                    "constraint: Member must satisfy enum value set: [HASH, RANGE]"])
        name = element["AttributeName"]
        if not 1 <= len(name) <= 255:
            raise constraint_error([f"Value '{name}' at '{field}.{i}.member.attributeName' "
                                    "failed to satisfy constraint: Member must have length between 1 and 255"])
        names.append(name)
        kinds.append(kind)
    return names, kinds


def _parse_key_schema(key_schema, field="keySchema", short_of_definitions=False) -> tuple[str, str | None]:
    names, types = key_schema_elements(key_schema, field)
    if types[0] != "HASH":
        raise ValidationException("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    if len(types) == 2:
        if types[1] != "RANGE":
            raise ValidationException("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
        if names[0] == names[1]:
            if short_of_definitions:
                raise ValidationException(NO_DEFINITION)
            raise ValidationException("Invalid KeySchema: Both the Hash Key and the Range Key element in the "
                                      "KeySchema have the same name")
        return names[0], names[1]
    return names[0], None


def java_hash_set_order(names) -> list[str]:
    """The order a java.util.HashSet of these strings iterates in.

    DynamoDB's "keys used" list in CreateTable's unused-definitions error is
    such a set: its order follows String.hashCode, not the request.
    """
    def bucket(name: str) -> int:
        code = 0
        units = name.encode("utf-16-be")
        for i in range(0, len(units), 2):
            code = (31 * code + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
        return (code ^ (code >> 16)) & (capacity - 1)
    names = list(names)
    capacity = 16
    while len(names) > capacity * 3 // 4:
        capacity *= 2
    return sorted(names, key=bucket)


def parse_attribute_definitions(definitions) -> dict[str, str]:
    if not isinstance(definitions, list):
        raise constraint_error(["Value null at 'attributeDefinitions' failed to satisfy constraint: "
                                "Member must not be null"])
    types: dict[str, str] = {}
    for i, definition in enumerate(definitions, 1):
        if not isinstance(definition, dict) or not isinstance(definition.get("AttributeName"), str):
            raise constraint_error([f"Value null at 'attributeDefinitions.{i}.member.attributeName' failed to "
                                    "satisfy constraint: Member must not be null"])
        kind = definition.get("AttributeType")
        if kind not in ("S", "N", "B"):
            raise constraint_error([f"Value '{kind}' at 'attributeDefinitions.{i}.member.attributeType' failed "
                                    "to satisfy constraint: Member must satisfy enum value set: [B, N, S]"])
        name = definition["AttributeName"]
        if not 1 <= len(name) <= 255:
            raise constraint_error([f"Value '{name}' at 'attributeDefinitions.{i}.member.attributeName' "
                                    "failed to satisfy constraint: Member must have length between 1 and 255"])
        if name in types:
            raise ValidationException(f"Attribute Name is duplicated: {name}")
        types[name] = kind
    return types


def _element_shown(element: dict) -> str:
    """A KeySchemaElement as DynamoDB's Java model prints it in a constraint message."""
    def shown(value):
        return "null" if value is None else value
    return (f"KeySchemaElement(attributeName={shown(element.get('AttributeName'))}, "
            f"keyType={shown(element.get('KeyType'))})")


def _check_create_members(request: dict) -> None:
    """CreateTable's member constraints (present, of a length, in an enum, at least 1), all
    reported in one message as DynamoDB's model validation does, before any rule that relates
    one member to another (a key type's order, a key's definition)."""
    constraints = Constraints()
    definitions = request.get("AttributeDefinitions")
    if constraints.required(definitions, "attributeDefinitions"):
        for i, definition in enumerate(definitions, 1):
            field = f"attributeDefinitions.{i}.member"
            constraints.required(definition.get("AttributeName"), f"{field}.attributeName")
            if constraints.required(definition.get("AttributeType"), f"{field}.attributeType"):
                constraints.enum(definition["AttributeType"], f"{field}.attributeType", ("B", "N", "S"))
    throughput = request.get("ProvisionedThroughput")
    throughput_constraints(constraints, throughput, "provisionedThroughput", ("ReadCapacityUnits", "WriteCapacityUnits"))
    keys = request.get("KeySchema")
    if constraints.required(keys, "keySchema"):
        if not keys:
            constraints.length(keys, "keySchema", low=1)
        elif len(keys) > 2:
            constraints._add("[" + ", ".join(_element_shown(e) for e in keys) + "]", "keySchema",
                             "Member must have length less than or equal to 2")
        for i, element in enumerate(keys, 1):
            field = f"keySchema.{i}.member"
            constraints.required(element.get("AttributeName"), f"{field}.attributeName")
            if constraints.required(element.get("KeyType"), f"{field}.keyType"):
                constraints.enum(element["KeyType"], f"{field}.keyType", ("HASH", "RANGE"))
    constraints.check()
    if throughput is not None:
        check_capacity_bounds(throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"])


MAX_CAPACITY = 1_000_000_000_000     # units of read or write capacity a table or index may be given


def check_capacity_bounds(read: int, write: int, index: str | None = None) -> None:
    """DynamoDB's upper bound on provisioned units, for a table or (named) a global index."""
    for number, member in ((read, "ReadCapacityUnits"), (write, "WriteCapacityUnits")):
        if number > MAX_CAPACITY:
            where = f" for index {index}" if index is not None else ""
            raise ValidationException(f"Given value {number} for {member} is out of bounds{where}")


def _parse_billing(request: dict) -> tuple[str, int, int]:
    mode = request.get("BillingMode", "PROVISIONED")
    if mode not in ("PROVISIONED", "PAY_PER_REQUEST"):
        raise constraint_error([f"Value '{mode}' at 'billingMode' failed to satisfy constraint: "
                                "Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"])
    throughput = request.get("ProvisionedThroughput")
    if mode == "PAY_PER_REQUEST":
        if throughput is not None:
            raise ValidationException("One or more parameter values were invalid: Neither ReadCapacityUnits "
                                      "nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        return mode, 0, 0
    if throughput is None:
        raise ValidationException("One or more parameter values were invalid: ReadCapacityUnits and "
                                  "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    read, write = throughput.get("ReadCapacityUnits"), throughput.get("WriteCapacityUnits")
    errors = []
    for value, field in ((read, "readCapacityUnits"), (write, "writeCapacityUnits")):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"Value null at 'provisionedThroughput.{field}' failed to satisfy constraint: "
                          "Member must not be null")
        elif value < 1:
            errors.append(f"Value '{value}' at 'provisionedThroughput.{field}' failed to satisfy constraint: "
                          "Member must have value greater than or equal to 1")
    if errors:
        raise constraint_error(errors)
    return mode, read, write


def schema_from_create_request(request: dict) -> TableSchema:
    """Validates a CreateTable request and builds the new table's schema."""
    if "TableName" not in request:
        raise ValidationException("The parameter 'TableName' is required but was not present in the request")
    name = check_table_name(request.get("TableName"))
    _check_create_members(request)
    # A table without indexes given fewer definitions than key elements: DynamoDB's own wording.
    raw_keys, raw_definitions = request.get("KeySchema"), request.get("AttributeDefinitions")
    short_of_definitions = (isinstance(raw_keys, list) and isinstance(raw_definitions, list)
                            and len(raw_definitions) < len(raw_keys)
                            and not request.get("LocalSecondaryIndexes") and not request.get("GlobalSecondaryIndexes"))
    hash_key, range_key = _parse_key_schema(raw_keys, short_of_definitions=short_of_definitions)
    types = parse_attribute_definitions(request.get("AttributeDefinitions"))
    mode, read, write = _parse_billing(request)
    key_names = [hash_key] + ([range_key] if range_key else [])
    missing = [n for n in key_names if n not in types]
    if missing and short_of_definitions:
        raise ValidationException(NO_DEFINITION)
    if missing:
        raise ValidationException(
            "One or more parameter values were invalid: Some index key attributes are not defined in "
            f"AttributeDefinitions. Keys: [{', '.join(missing)}], AttributeDefinitions: [{', '.join(types)}]")
    from shardserver.shard import indexes
    local_indexes, global_indexes = indexes.parse_create_indexes(request, hash_key, range_key, types,
                                                                 mode, read, write)
    used = dict.fromkeys(key_names)
    for index in local_indexes + global_indexes:
        used.update(dict.fromkeys(element["AttributeName"] for element in index["KeySchema"]))
    if set(types) != set(used) and (local_indexes or global_indexes):
        raise ValidationException(
            "One or more parameter values were invalid: Some AttributeDefinitions are not used. "
            f"AttributeDefinitions: [{', '.join(types)}], keys used: [{', '.join(java_hash_set_order(used))}]")
    if set(types) != set(used):
        raise ValidationException(
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly "
            "match number of attributes defined in AttributeDefinitions")
    stream = request.get("StreamSpecification")
    if stream is not None:
        stream = streams.check_specification(stream, creating=True)
    check_on_demand(request.get("OnDemandThroughput"), mode, "table", creating=True)
    for index in request.get("GlobalSecondaryIndexes") or ():
        check_on_demand(index.get("OnDemandThroughput"), mode, f"index : {index['IndexName']}", creating=True)
    extra = table_settings(request)
    extra["WarmThroughput"] = initial_warm_throughput(extra.get("WarmThroughput"), mode, read, write)
    if request.get("ResourcePolicy") is not None:
        from shardserver.shard.executor import resource_policies
        extra[resource_policies.KEY] = resource_policies.initial_policies(request["ResourcePolicy"])
    created = now()
    return TableSchema(
        name=name, table_id=new_table_id(),
        hash_key=hash_key, hash_type=types[hash_key],
        range_key=range_key, range_type=types[range_key] if range_key else None,
        attribute_definitions=[{"AttributeName": n, "AttributeType": t} for n, t in types.items()],
        creation_time=created, billing_mode=mode, read_capacity=read, write_capacity=write,
        local_indexes=local_indexes,
        global_indexes=global_indexes,
        stream_specification=stream,
        streams=[streams.new_stream(stream["StreamViewType"], int(created * 1000), [])]
        if stream and stream["StreamEnabled"] else [],
        tags=merged_tags([], checked_tags(request.get("Tags") or [])),     # the count and size limits too
        extra=extra,
    )


TABLE_CLASSES = ("STANDARD", "STANDARD_INFREQUENT_ACCESS")


def table_settings(request: dict) -> dict:
    """The table's settings a CreateTable or UpdateTable request gives (deletion protection,
    table class, encryption at rest, on-demand throughput caps, warm throughput); stored and
    described only: every table here is stored the same way."""
    extra = {}
    if request.get("DeletionProtectionEnabled") is not None:
        extra["DeletionProtectionEnabled"] = bool(request["DeletionProtectionEnabled"])
    table_class = request.get("TableClass")
    if table_class is not None:
        if table_class not in TABLE_CLASSES:
            # DynamoDB's own wording here, not the model's enum-constraint message.
            raise ValidationException("Invalid table-class parameter provided. Please try again with a valid "
                                      "table-class value: [STANDARD, STANDARD_INFREQUENT_ACCESS].")
        extra["TableClass"] = table_class
    sse = request.get("SSESpecification")
    if sse is not None:
        extra["SSEEnabled"] = _sse_enabled(sse)
    on_demand = request.get("OnDemandThroughput")
    if isinstance(on_demand, dict):
        extra["OnDemandThroughput"] = {k: on_demand[k] for k in ("MaxReadRequestUnits", "MaxWriteRequestUnits")
                                       if isinstance(on_demand.get(k), int)}
    warm = request.get("WarmThroughput")
    if isinstance(warm, dict):
        extra["WarmThroughput"] = {unit: warm[unit] for unit in WARM_THROUGHPUT_BASELINE if warm.get(unit) is not None}
    return extra


ON_DEMAND_INITIAL = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html"
                     "#on-demand-capacity-mode-initial")


def initial_warm_throughput(asked: dict | None, mode: str, read: int, write: int) -> dict:
    """A new table's WarmThroughput: on demand, DynamoDB's initial throughput (12,000 reads and
    4,000 writes a second) or more; provisioned, its units or more (what it was asked for, or
    else its units: DynamoDB's warm throughput of a provisioned table is the most it has been
    provisioned)."""
    floor = dict(WARM_THROUGHPUT_BASELINE) if mode == "PAY_PER_REQUEST" else {
        "ReadUnitsPerSecond": read, "WriteUnitsPerSecond": write}
    warm = {**floor, **(asked or {})}
    prefix = "One or more parameter values were invalid: Requested "
    for unit, capacity in (("ReadUnitsPerSecond", "ReadCapacityUnits"), ("WriteUnitsPerSecond", "WriteCapacityUnits")):
        if warm[unit] >= floor[unit]:
            continue
        if mode == "PAY_PER_REQUEST":
            raise ValidationException(f"{prefix}{unit} for WarmThroughput for table is lower than initial throughput "
                                      f"for OnDemand. See: {ON_DEMAND_INITIAL}")
        raise ValidationException(f"{prefix}{unit} for WarmThroughput for table is lower than {capacity} of "
                                  "ProvisionedThroughput")
    return warm



def check_on_demand(value, mode: str, owner: str, creating: bool = False) -> None:
    """OnDemandThroughput caps (of the table, or of "index : I") against the billing mode and their range:
    none on a provisioned table, each at least 1 (UpdateTable's -1 takes a cap away)."""
    if not isinstance(value, dict):
        return
    prefix = "One or more parameter values were invalid: "
    for unit in ("MaxReadRequestUnits", "MaxWriteRequestUnits"):
        number = value.get(unit)
        if number is None:
            continue
        if mode == "PROVISIONED":
            if creating and owner == "table":
                raise ValidationException(f"{prefix}{unit} for OnDemandThroughput cannot be specified when table "
                                          "BillingMode is PROVISIONED.")
            if creating:
                raise ValidationException(f"{prefix}{unit} for OnDemandThroughput for {owner.replace(' :', ':')} "
                                          "cannot be specified when table BillingMode is PROVISIONED.")
            raise ValidationException(f"{prefix}{unit} for OnDemandThroughput cannot be specified when the table "
                                      "BillingMode is PROVISIONED")
        if number < 1 and not (number == -1 and not creating):
            raise ValidationException(f"{prefix}Requested {unit} for OnDemandThroughput for {owner} is outside of "
                                      "valid range")


def _sse_enabled(sse: dict, field: str = "sSESpecification") -> bool:
    """Whether an SSESpecification asks for a KMS key (True) or the AWS owned key, after DynamoDB's rules."""
    enabled, sse_type, key = sse.get("Enabled"), sse.get("SSEType"), sse.get("KMSMasterKeyId")
    if key == "":
        raise constraint_error([f"Value '' at '{field}.kMSMasterKeyId' failed to satisfy constraint: "
                                "Member must have length greater than or equal to 1"])
    prefix = "One or more parameter values were invalid: "
    if enabled is False and sse_type is not None:
        raise ValidationException(prefix + "SSEType can not be specified if Enabled is false")
    if enabled is False and key is not None:
        raise ValidationException(prefix + "KMSMasterKeyId can not be specified if Enabled is false")
    if sse_type == "AES256":
        raise ValidationException(prefix + "SSEType AES256 is not supported")
    if key is not None and sse_type != "KMS":
        raise ValidationException(prefix + "SSEType KMS is required if KMSMasterKeyId is specified")
    # Enabled left out: an SSEType of KMS alone asks for the KMS key.
    return bool(enabled) if enabled is not None else sse_type == "KMS"


def _tag_character(c: str) -> bool:
    """DynamoDB's tag alphabet: letters, white space and numbers of any script, and + - = . _ : / @"""
    return unicodedata.category(c)[0] in "LZN" or c in "+-=._:/@"


def _tag_key_problem(key) -> str | None:
    """DynamoDB's own words for a tag key it refuses (not the request model's constraint messages)."""
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not all(_tag_character(c) for c in key):
        return f"The Tag Key provided is invalid, Key: {'null' if key is None else key}"
    return None


def _reserved_tag_key(key: str) -> bool:
    """AWS's own tag keys, which no one may set or remove: aws: in any case (AWS:, Aws:)."""
    return key[:4].lower() == "aws:"


def checked_tags(tags: list) -> list:
    """A Tags list (member types already checked) after DynamoDB's rules for it, all or nothing."""
    seen = set()
    for tag in tags:
        key, value = tag.get("Key"), tag.get("Value")
        problem = _tag_key_problem(key)
        if problem:
            raise ValidationException(problem)
        if _reserved_tag_key(key):
            raise ValidationException(f"Tag Key cannot be prefixed with aws:, Key: {key}")
        if value is None or len(value) > 256 or not all(_tag_character(c) for c in value):
            shown = "null" if value is None else value
            raise ValidationException(f"The Tag Value provided is invalid, Value: {shown}")
        if key in seen:
            raise ValidationException(f"Duplicate Tag Keys provided as input: Duplicate Tag Key found {key}")
        seen.add(key)
    if len(tags) > 50:
        raise ValidationException("Number of Tags exceed the current limit for the provided ResourceArn")
    return [{"Key": t["Key"], "Value": t["Value"]} for t in tags]


MAX_TAG_SET_BYTES = 10240      # a table's keys and values together, after the change


def merged_tags(tags: list, added: list) -> list:
    """A table's tags with ``added`` (checked) set on them: a key it has takes the new value."""
    merged = {t["Key"]: t["Value"] for t in tags}
    merged.update((t["Key"], t["Value"]) for t in added)
    if len(merged) > 50:
        raise ValidationException("Number of Tags exceed the current limit for the provided ResourceArn")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in merged.items())
    if size > MAX_TAG_SET_BYTES:
        raise ValidationException(f"Tag set size {size} bytes is above max size limit of {MAX_TAG_SET_BYTES} bytes")
    return [{"Key": k, "Value": v} for k, v in merged.items()]


# ------------------------------------------------------------------ operations

async def describe(svc, schema: TableSchema, status: str = "ACTIVE") -> dict:
    if "RestoreSource" in schema.extra:
        # Restored from a backup, and CREATING until every shard has built its storage.
        return schema.description(0, 0, "CREATING" if status == "ACTIVE" else status)
    count, size = await svc.table_totals(schema)
    index_stats = None
    if schema.local_indexes or schema.global_indexes:
        from shardserver.shard import indexes
        index_stats = await indexes.index_totals(svc, schema)
    return schema.description(count, size, status, index_stats)


@operation("CreateTable")
async def create_table(svc, request: dict) -> bytes:
    schema = schema_from_create_request(request)
    if svc.catalog.tables.get(schema.name) is not None:
        raise ResourceInUseException(f"Table already exists: {schema.name}")
    if len(svc.catalog.tables) >= MAX_TABLES:
        raise LimitExceededException(f"Subscriber limit exceeded: Only {MAX_TABLES} tables are allowed")
    await svc.change_catalog(b"create", orjson.dumps(schema.to_json()))
    # As DynamoDB answers, the table and its global indexes CREATING; the table is usable
    # at once, so DescribeTable (and every waiter) sees ACTIVE from the next request on.
    description = schema.description(0, 0, "CREATING")
    # Unlike DescribeTable, CreateTable's answer has no WarmThroughput the request did not
    # set, table or index, and no LastUpdateToPayPerRequestDateTime (as DynamoDB answers).
    if request.get("WarmThroughput") is None:
        description.pop("WarmThroughput", None)
    asked_warm = {i.get("IndexName") for i in request.get("GlobalSecondaryIndexes") or ()
                  if i.get("WarmThroughput") is not None}
    for index in description.get("GlobalSecondaryIndexes", ()):
        index["IndexStatus"] = "CREATING"
        if index["IndexName"] not in asked_warm:
            index.pop("WarmThroughput", None)
    description.get("BillingModeSummary", {}).pop("LastUpdateToPayPerRequestDateTime", None)
    return orjson.dumps({"TableDescription": description})


DELETE_OMITS = ("CreationDateTime", "KeySchema", "AttributeDefinitions", "LocalSecondaryIndexes",
                "GlobalSecondaryIndexes")


@operation("DeleteTable")
async def delete_table(svc, request: dict) -> bytes:
    schema = existing_table(svc, request)
    if schema.deletion_protection:
        raise ValidationException("Resource cannot be deleted as it is currently protected against deletion. "
                                  "Disable deletion protection first.")
    description = await describe(svc, schema, "DELETING")
    # DynamoDB's DeleteTable answer leaves the schema out (key schema, attribute
    # definitions, indexes) and the creation time: only what identifies the table,
    # its status, billing and totals.
    for member in DELETE_OMITS:
        description.pop(member, None)
    await svc.change_catalog(b"delete", schema.name.encode())
    return orjson.dumps({"TableDescription": description})


@operation("DescribeTable")
async def describe_table(svc, request: dict) -> bytes:
    schema = existing_table(svc, request)
    return orjson.dumps({"Table": await describe(svc, schema)})


@operation("ListTables")
async def list_tables(svc, request: dict) -> bytes:
    limit = request.get("Limit", 100)
    start = request.get("ExclusiveStartTableName")
    errors = table_name_errors(start, "exclusiveStartTableName", pattern_first=True) if start is not None else []
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
        errors.append(f"Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value "
                      + ("less than or equal to 100" if isinstance(limit, int) and limit > 100
                         else "greater than or equal to 1"))
    if errors:
        raise constraint_error(errors)      # the start's and the limit's together, as DynamoDB reports them
    names = sorted(svc.catalog.tables)
    if start is not None:
        names = [n for n in names if n > start]
    page = names[:limit]
    response = {"TableNames": page}
    if len(names) > limit:
        response["LastEvaluatedTableName"] = page[-1]
    return orjson.dumps(response)


@operation("DescribeEndpoints")
async def describe_endpoints(svc, request: dict) -> bytes:
    return orjson.dumps({"Endpoints": [{"Address": svc.public_address(), "CachePeriodInMinutes": 1440}]})


@operation("DescribeLimits")
async def describe_limits(svc, request: dict) -> bytes:
    return orjson.dumps({"AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
                         "TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000})


def _schema_by_arn(svc, arn) -> TableSchema:
    if arn is None:
        raise constraint_error(["Value null at 'resourceArn' failed to satisfy constraint: Member must not be null"])
    if not isinstance(arn, str) or arn[:4].lower() != "arn:":
        # An ARN in capitals is some other resource's: not found, below.
        raise ValidationException(f"One or more parameter values were invalid: ARNs must start with 'arn:': {arn}")
    resource = arn.partition(":table/")[2]
    if resource.partition("/")[2].startswith("backup/"):
        raise ValidationException(f"One or more parameter values were invalid: Provided Arn is not a DynamoDB "
                                  f"resource arn: {arn}")
    if "/" in resource:
        # An index's ARN (table/<name>/index/<index>) is not taggable: DynamoDB takes only a table's.
        raise ValidationException(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    name = arn.rsplit("/", 1)[-1]
    schema = svc.catalog.tables.get(name)
    if schema is None or schema.arn != arn:
        raise ResourceNotFoundException(f"Requested resource not found: ResourcArn: {arn} not found")
    return schema


@operation("ListTagsOfResource")
async def list_tags_of_resource(svc, request: dict) -> bytes:
    schema = _schema_by_arn(svc, request.get("ResourceArn"))
    return orjson.dumps({"Tags": schema.tags})


@operation("TagResource")
async def tag_resource(svc, request: dict) -> bytes:
    schema = _schema_by_arn(svc, request.get("ResourceArn"))
    tags = request.get("Tags")
    if tags is None:
        raise ValidationException("1 validation error detected: Value null at 'tags' failed to satisfy "
                                  "constraint: Member must not be null")
    if not tags:
        raise ValidationException("Atleast one Tag needs to be provided as Input.")
    added = checked_tags(tags)
    merged_tags(schema.tags, added)    # refuse early what the coordinator would refuse
    # The change travels as a delta, applied on the catalog coordinator against the tags it
    # holds then: two concurrent TagResource/UntagResource calls cannot undo each other.
    await svc.change_catalog(b"tags", orjson.dumps({"name": schema.name, "add": added}))
    return b""      # DynamoDB answers TagResource and UntagResource with an empty body


@operation("UntagResource")
async def untag_resource(svc, request: dict) -> bytes:
    schema = _schema_by_arn(svc, request.get("ResourceArn"))
    keys = request.get("TagKeys")
    if keys is None:
        raise ValidationException("1 validation error detected: Value null at 'tagKeys' failed to "
                                  "satisfy constraint: Member must not be null")
    if not keys:
        raise ValidationException("Atleast one Tag Key needs to be provided as Input.")
    for key in keys:
        problem = _tag_key_problem(key)
        if problem:
            raise ValidationException(problem)
        if _reserved_tag_key(key):
            raise ValidationException(f"Tag Key cannot be prefixed with aws:, Key: {key}")
    if len(keys) > 50:
        raise ValidationException("Number of Tags exceed the current limit for the provided ResourceArn")
    await svc.change_catalog(b"tags", orjson.dumps({"name": schema.name, "remove": keys}))
    return b""


def changed_tags(tags: list, change: dict) -> list:
    """A table's tags after one TagResource (``add``) or UntagResource (``remove``) delta."""
    gone = set(change.get("remove", ()))
    return merged_tags([t for t in tags if t["Key"] not in gone], change.get("add", []))
