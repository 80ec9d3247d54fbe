"""Fixtures for Ray tests: one Ray session per test run."""

import os

import pytest

__all__ = ["ray_session"]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray shared by the whole test session (~5 s and ~1.2 GiB to start, so only once)."""
    ray = pytest.importorskip("ray")
    # never join a cluster named by the environment; workers import `gan` and `jobs` as
    # installed, as a cluster's workers do from the image
    os.environ.pop("RAY_ADDRESS", None)
    if not ray.is_initialized():
        from jobs.raylocal import local_token_auth

        local_token_auth()  # token authentication, as the jobs start a local Ray
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            object_store_memory=200 * 1024**2,  # trials pass checkpoints through files, not objects
            log_to_driver=False,
        )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
