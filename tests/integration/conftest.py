"""Integration tests: real servers on loopback, started and stopped by fixtures.

Each server's fixtures live in their own module and are imported below. (Not through
``pytest_plugins``: pytest refuses that in a conftest below the rootdir, which fails the
whole suite.)
"""

from ._flaky_client import flaky_store as flaky_store
from ._flaky_client import flaky_store_server as flaky_store_server
from ._httpserver import http_server as http_server
from ._kafka import kafka_broker as kafka_broker
from ._kafka import own_kafka as own_kafka
from ._mysql import mariadb as mariadb
from ._postgres import postgres_server as postgres_server
from ._redis import own_redis as own_redis
from ._redis import redis_server as redis_server

__all__ = (
    "flaky_store",
    "flaky_store_server",
    "http_server",
    "kafka_broker",
    "mariadb",
    "own_kafka",
    "own_redis",
    "postgres_server",
    "redis_server",
)
