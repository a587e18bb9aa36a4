"""An S3-compatible server on loopback that requires credentials: moto's server mode.

moto checks signatures against its own IAM once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests
have passed unauthenticated; those few create the one user (allowed ``s3:*``) and its
access key, and every later request must be signed with that key. restic reaches it as
``s3:http://127.0.0.1:PORT/<bucket>``; each test takes a bucket of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.support.ports import free_port
from tests.support.processes import BIN, Running, started_on_fresh_ports

SETUP_ACTIONS = 3  # create_user, put_user_policy, create_access_key
START_TIMEOUT = 20.0
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


class _PortTaken(RuntimeError):
    pass


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str = field(repr=False)

    def repository(self, bucket: str | None = None) -> str:
        """A restic repository URL in a fresh bucket (restic creates it)."""
        return f"s3:{self.endpoint}/{bucket or 'mf-' + uuid.uuid4().hex[:12]}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self, **credentials: Any) -> Any:
        """A boto3 S3 client with these credentials (or those given)."""
        keys = {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            **{**keys, **credentials})  # fmt: skip


def _wait_listening(running: Running, port: int) -> None:
    """Until the port accepts connections (a TCP probe: an HTTP one would use up one of
    the unauthenticated requests)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            log = "\n".join(running.output())
            raise (_PortTaken if "in use" in log else RuntimeError)(f"moto exited:\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"moto did not listen within {START_TIMEOUT} s")


def _start(stack: contextlib.ExitStack) -> S3Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_ACTIONS)
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, env=env, start_new_session=True,
    )  # fmt: skip
    running = Running(process)
    stack.callback(running.stop)
    _wait_listening(running, port)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
    iam.create_user(UserName="restic")
    iam.put_user_policy(UserName="restic", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="restic")["AccessKey"]
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the session (buckets keep tests apart)."""
    with started_on_fresh_ports(_start, _PortTaken, 3) as server:
        yield server
