"""A newcomer's first events: create, update and delete a record in the emulator, watch the mirror."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable

import sqlalchemy
from sqlalchemy.orm import Session

from config import load_settings
from devstack.stack import emulator_api
from workers.database import make_engine
from workers.models import MirroredRecord


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--aiwyn", default="http://127.0.0.1:8700", help="the emulator's base URL")
    parser.add_argument("--client-id", default="local-client")
    parser.add_argument("--client-secret", default="local-secret")
    args = parser.parse_args(argv)

    api = emulator_api(args.aiwyn, args.client_id, args.client_secret)
    ref = {"system": "demo", "id": f"C-{uuid.uuid4().hex[:6]}"}
    engine = make_engine(load_settings().database_url)

    steps = [
        ("POST", {"attributes": {"name": "Acme LLP"}}, lambda row: row.attributes.get("name") == "Acme LLP"),
        ("PUT", {"attributes": {"name": "Acme & Co LLP"}}, lambda row: row.attributes.get("name") == "Acme & Co LLP"),
        ("DELETE", {}, lambda row: not row.active),
    ]
    record_id = None
    for method, fields, landed in steps:
        answer = api.request(method, "/api/v1/records", json={"records": [{"type": "client", "systemRef": ref, **fields}]})
        answer.raise_for_status()
        if record_id is None:
            record_id = answer.json()["data"]["records"][0]["id"]
        print(f"{method:6} /api/v1/records -> {answer.status_code} (client {ref['id']}, {record_id})")
        row = _wait_for(engine, record_id, landed)
        if row is None:
            print("  not in the mirror after 15 s: is the worker running? See the run command's output.", file=sys.stderr)
            return 1
        print(f"  mirror: version={row.version} active={row.active} attributes={row.attributes}")
    return 0


def _wait_for(engine: sqlalchemy.Engine, record_id: str, landed: Callable[[MirroredRecord], bool]) -> MirroredRecord | None:
    query = sqlalchemy.select(MirroredRecord).where(MirroredRecord.record_id == record_id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with Session(engine) as session:
            row = session.scalars(query).first()
        if row is not None and landed(row):
            return row
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    sys.exit(main())
