"""Fixtures for Ray tests: one Ray session per test process (each xdist worker has its own)."""

import os

import pytest

__all__ = ["ray_session", "tune_base"]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole session of this test process (~5 s and ~1.2 GiB to start)."""
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


@pytest.fixture(scope="session")
def tune_base(tmp_path_factory, fmnist_dir):
    """Base config values of the Ray tests' trials: tiny real data in one shared data/cache dir,
    whose data and classifier caches are filled once, not in every trial."""
    from gan.config import make_config
    from gan.metrics import make_evaluator

    data_dir = tmp_path_factory.mktemp("tune_data")
    base = dict(
        dataset="fashion_mnist",
        data_dir=str(data_dir),
        limit=256,
        batch_size=32,
        width=8,
        latent_dim=16,
        epochs=3,
        eval_every=1,
        metric="fd_domain",
        fid_samples=256,
        sample_every=1,
        checkpoint_every=1,
        device="cpu",
        seed=0,
    )
    make_evaluator(make_config(base), "cpu")
    return base
