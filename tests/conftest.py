"""Test harness: real Redis, fake Intuned and webhook receivers, all started by the suite itself."""

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.intuned_fixtures",
    "tests.support.receiver_fixtures",
    "tests.support.relay_fixtures",
    "tests.support.store_helpers",
    "tests.support.e2e",
    "tests.support.api_module_fixtures",
    "tests.support.reliability",
]
