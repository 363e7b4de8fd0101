"""Fixtures of the distributed tests: a private network, a Ray instance and an S3-compatible server.

These tests start servers, so they run only where nothing can leave the machine: inside a
network namespace of their own that has no interface but loopback (``make test`` runs them with
``unshare -n``). Elsewhere they are skipped with that reason. The S3 server is moto's, bound to
127.0.0.1 on a free port (its default bind is every interface).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

S3_KEY = S3_SECRET = "unibatch-test"


def _only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session", autouse=True)
def private_network():
    if not _only_loopback():
        pytest.skip("distributed tests run only in a private network namespace: make test (unshare -n)")


@pytest.fixture(scope="session")
def ray_instance(private_network):
    ray = pytest.importorskip("ray")
    import _distributed_workers

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.cloudpickle.register_pickle_by_value(_distributed_workers)  # workers need not import the tests
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(private_network):
    """``storage_options`` of an S3-compatible moto server on 127.0.0.1, with an empty bucket ``unibatch``."""
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": S3_KEY, "secret": S3_SECRET}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir("unibatch")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield options
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_url(s3_server):
    """A fresh dataset prefix in the test bucket."""
    return f"s3://unibatch/{uuid.uuid4().hex}"
