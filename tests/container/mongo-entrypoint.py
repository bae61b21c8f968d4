"""The test MongoDB's entrypoint (tests/container/mongo.Dockerfile).

mongo-entrypoint.py          serve /data/db on 0.0.0.0:27017
mongo-entrypoint.py --ping   exit 0 when the server answers an authenticated ping (health check)
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pymongo

DATA = Path("/data/db")
SECANTUSD = str(Path(sys.executable).with_name("secantusd-py"))
PROVISIONED = DATA / ".root-user-created"
USER, PASSWORD = os.environ.get("MONGO_INITDB_ROOT_USERNAME"), os.environ.get("MONGO_INITDB_ROOT_PASSWORD")


def server(host: str, port: int, auth: bool) -> list[str]:
    return [SECANTUSD, "--host", host, "--port", str(port), "--storage-path", str(DATA),
            "--standalone", "--log-level", "WARNING"] + (["--auth"] if auth else [])  # fmt: skip


def client(port: int, auth: bool) -> pymongo.MongoClient:
    credentials = {"username": USER, "password": PASSWORD, "authSource": "admin"} if auth else {}
    return pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=2000, **credentials)


def create_root_user() -> None:
    """Start once without authentication on a private port, create the root user, stop."""
    process = subprocess.Popen(server("127.0.0.1", 27018, auth=False))
    try:
        for _ in range(150):
            try:
                client(27018, auth=False).admin.command("createUser", USER, pwd=PASSWORD,
                                                         roles=[{"role": "root", "db": "admin"}])  # fmt: skip
                break
            except pymongo.errors.ServerSelectionTimeoutError:
                time.sleep(0.2)
        else:
            sys.exit("the test MongoDB did not start")
    finally:
        process.terminate()
        process.wait(timeout=30)
    PROVISIONED.touch()


if __name__ == "__main__":
    if sys.argv[1:] == ["--ping"]:
        client(27017, auth=bool(USER)).admin.command("ping")
        sys.exit(0)
    DATA.mkdir(parents=True, exist_ok=True)
    if USER and not PROVISIONED.exists():
        create_root_user()
    os.execv(SECANTUSD, server("0.0.0.0", 27017, auth=bool(USER)))
