"""Shared fixtures: one real server (2 shards) for the whole session, boto3 clients, fresh tables."""

import itertools
import re
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from serverutil import ServerProcess  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("data"), smp=2).start()
    yield proc
    status = proc.stop()
    assert status == 0, proc.log()


@pytest.fixture(scope="session")
def ddb(server):
    return server.client()


@pytest.fixture
def table_name(request):
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", f"t{next(_names)}_{request.node.name[:40]}")


def create_table(client, name, hash_key=("pk", "S"), range_key=None, attributes=(), **extra):
    """`attributes`: (name, type) of further key attributes, for the indexes in `extra`."""
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    definitions = [{"AttributeName": hash_key[0], "AttributeType": hash_key[1]}]
    definitions += [{"AttributeName": n, "AttributeType": t} for n, t in attributes]
    if range_key:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        definitions.append({"AttributeName": range_key[0], "AttributeType": range_key[1]})
    client.create_table(TableName=name, KeySchema=schema, AttributeDefinitions=definitions,
                        BillingMode="PAY_PER_REQUEST", **extra)
    return name


@pytest.fixture
def hash_table(ddb, table_name):
    create_table(ddb, table_name)
    yield table_name
    ddb.delete_table(TableName=table_name)


@pytest.fixture
def range_table(ddb, table_name):
    create_table(ddb, table_name, range_key=("sk", "S"))
    yield table_name
    ddb.delete_table(TableName=table_name)
