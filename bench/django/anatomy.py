"""Where a direct read's time goes, on DynamoDB Local (run by ``scripts/bench django``
after bench.py, with the same environment).

One session is created through the service; then, interleaved (one of each per round,
so the machine's noise hits all alike), the median of:

* ``GetItem`` of its item in the sessions table (botocore, strongly consistent);
* the same item copied into a table without the expiry index;
* only three of its attributes (``handle``, ``doc``, ``expires_at``) in such a table,
  the size of a minimal backend's item;
* ``DirectReader.read`` (the ``GetItem`` above, then the id checked, the document
  opened and the session built);
* the read's local work alone, on the item already fetched.

Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import botocore.session

from session_service import Client, direct, sealed
from session_service.direct import DirectReader

ROUNDS = int(os.environ.get("BENCH_ANATOMY_ROUNDS", "1500"))


def table(dynamodb: Any, name: str) -> str:
    """A table keyed by ``handle``, made if missing."""
    try:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "handle", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "handle", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    return name


def main() -> None:
    sessions = os.environ["SERVICE_SESSIONS_TABLE"]
    issued = Client(os.environ["SERVICE_URL"]).create({"views": 1, "user": "someone"})
    dynamodb = botocore.session.get_session().create_client("dynamodb", region_name=os.environ["AWS_REGION"])
    key = {"handle": {"S": sealed.item_key(issued.id)}}
    item = dynamodb.get_item(TableName=sessions, Key=key, ConsistentRead=True)["Item"]
    full, small = table(dynamodb, "anatomy_full"), table(dynamodb, "anatomy_small")
    dynamodb.put_item(TableName=full, Item=item)
    dynamodb.put_item(TableName=small, Item={name: item[name] for name in ("handle", "doc", "expires_at")})
    reader = DirectReader(sessions, dynamodb_client=dynamodb)

    def local_work() -> None:
        sealed.valid_id(issued.id)
        handle = sealed.item_key(issued.id)
        data = direct._open_data(issued.id, handle, item["doc"])
        assert data is not None
        direct._session(item, data)

    cases: dict[str, Callable[[], Any]] = {
        f"`GetItem` of the session's item ({len(item)} attributes), sessions table": lambda: dynamodb.get_item(
            TableName=sessions, Key=key, ConsistentRead=True
        ),
        "the same item, a table without the expiry index": lambda: dynamodb.get_item(
            TableName=full, Key=key, ConsistentRead=True
        ),
        "3 of its attributes (`handle`, `doc`, `expires_at`), a table without an index": lambda: dynamodb.get_item(
            TableName=small, Key=key, ConsistentRead=True
        ),
        "`DirectReader.read` (the first row, then the local work)": lambda: reader.read(issued.id),
        "the local work alone: id checked, document opened, session built": local_work,
    }
    times: dict[str, list[int]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():
            started = time.perf_counter_ns()
            case()
            times[name].append(time.perf_counter_ns() - started)
    print("### Where a direct read's time goes")
    print()
    print(f"Medians of {ROUNDS} interleaved rounds, botocore {botocore.__version__}, on the service's DynamoDB Local:")
    print()
    print("| what | median µs |")
    print("| --- | ---: |")
    for name, spent in times.items():
        print(f"| {name} | {statistics.median(spent) / 1000:.0f} |")


if __name__ == "__main__":
    main()
