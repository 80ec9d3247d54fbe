"""On CUDA (skipped without a GPU; bench/gpu.sh runs them on a lent machine): a training epoch with
AMP, channels_last and torch.compile, FID on the GPU against the CPU, and 4 trial processes
packed on one GPU."""

import math

import pytest
import torch

from gan.checkpoint import load_checkpoint, numbered
from gan.metrics import make_evaluator
from gan.models import build_models
from gan.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_a_cuda_epoch_with_amp_channels_last_and_compile(tmp_path, tiny, arch):
    cfg = tiny(arch=arch, device="cuda", amp=True, compile=True, epochs=2, conditional=True)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["epoch"] == 2
    state = load_checkpoint(numbered(tmp_path / "run")[-1])
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
    rows = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"d_loss": null' not in rows[-1]  # finite losses, logged


def test_fid_on_the_gpu_matches_the_cpu(fid_cfg):
    cfg = fid_cfg(fid_samples=64)
    torch.manual_seed(0)
    G = build_models(cfg)[0].eval()
    on_cpu = make_evaluator(cfg, "cpu").evaluate(G)
    on_gpu = make_evaluator(cfg, "cuda").evaluate(G.cuda())
    for key in ("fid", "fd_domain"):
        assert math.isfinite(on_gpu[key])
        assert on_gpu[key] == pytest.approx(on_cpu[key], rel=1e-2), key  # TF32/cuDNN vs CPU


def test_four_trial_processes_train_side_by_side_on_one_gpu(tmp_path, tiny):
    from bench.rows.packing import bench_packing

    data_dir = str(tiny().data_dir)
    rows = bench_packing(counts=(1, 4), seconds=3.0, data_dir=data_dir)
    assert [r["trials"] for r in rows] == [1, 4]
    assert rows[1]["per_trial_img_s"] > 0 and rows[1]["aggregate_img_s"] > 0
