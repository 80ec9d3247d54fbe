"""The performance section: the training, FID, Fréchet, packing, ASHA and quick-tune rows, each from
the JSON it was measured in, then the MFU and growth tables; the search section sits inside it."""

from __future__ import annotations

from bench.report.markdown import table

INTRO = """\
`make bench` (`python -m bench`) runs every benchmark once, prints each row as it is measured
and saves them, with the machine, as JSON under `bench/results/`. Each row compares against a
reference measured in the same run.
Committed results: `bench/results/{packing}` (2 AMD EPYC cores, no GPU; GPU
figures are pending: the GPU rows need a GPU machine and are never estimated); the ASHA, screen
and quick rows are from `bench/results/{quick}`; every other row names its
JSON. The quality row (fd_domain per epoch and per second
against a textbook DCGAN) is in [Recipes](#recipes), from `bench/results/{quality}`.

The GPU rows come from one prepared script, `bench/gpu.sh`, for a machine with torch and
torchvision but no network: `bash bench/gpu.sh --prepare` here puts torch-fidelity's wheel in
`.whl/` and the Fashion-MNIST files in `.fmnist/` (both git-ignored) to carry along; `bash
bench/gpu.sh` there runs the CUDA tests (`pytest -m gpu`: an AMP + channels_last + compile epoch
for dcgan and resnet, FID on the GPU against the CPU, 4 trial processes on one GPU) and
`python -m bench train fid mfu packing quality --quick`, in under 8 minutes, and writes the
JSON and both logs to `$OUT`. `bash bench/gpu.sh --smoke` runs the same plumbing on a CPU.
"""

FID_NOTES = """\
On a CPU one FID evaluation is Inception: 98.8% of ours at n = 5000 goes to its forward passes
(about 14 images a second on the 2 cores), so no rework of the rest can make it much faster. What
the in-memory flow saves is the other Inception pass and the disk: the seed's flow recomputes the
real statistics (2n images through Inception, 3.0x ours), and even with torch-fidelity's cache
of them it writes and decodes 2n PNGs (1.5x ours). Both folder flows give the same FID as ours
to 4e-7 relative. A 5x gain at 5k would need the recomputing folder flow to spend three fifths
of its time outside Inception; here it spends about a third (1078 s, about 2 x 353 s of it
Inception). At 10k (one run: 94 minutes for the row, five passes of 10k images and a cache
fill) the same holds: ours 716.0 s, 99.2% of it Inception; the recomputing folder flow 2.93x,
the cached one 1.49x; with `fid_compile` 4.08x and 2.08x. All four give the same FID to 1e-7
relative.

So the lever left is Inception itself. `--set fid_compile=true` runs it through `torch.compile`
with its weights frozen (Inductor's `freezing`: the weights become constants and BatchNorm is
folded into the convolutions): 1.47x faster per evaluation at n = 5000 on the 2 cores (1.35x at
500), the FID equal to the eager one to 1e-8 relative (536.252566 against 536.252571), after a
compile of about 20 s that each process pays once (a tune trial or `gan train` evaluates many
times in one process). Against the folder flow that recomputes the real statistics that is 3.96x
at n = 5000 (2.71x eager, same run) and 4.85x at 500: short of 5x at 5k, where that flow spends
about two thirds of its time in Inception. It is off by default: it needs a C++ compiler at run
time on a CPU (without one it warns once and runs eager), and on a GPU it is not measured yet.

Why 5x at 5k is out of reach on this CPU: that flow took 989.7 s at n = 5000, so 5x asks for
one evaluation in 198 s, Inception at 25.3 images a second, 289 GFLOP/s of its 11.4 GFLOP an
image: 82% of the fp32 matmul peak of the MFU run. The MFU rows show the compiled extraction's
convolutions already at 85% of that peak and taking 82% of its time; were every other op (the
resize to 299 px, pooling, concatenation) free, it would run 25.9 images a second, 5.1x, with no
room left. (This arithmetic joins two runs on the same host, `cpu-20261205-095711.json` and
`cpu-20261205-103732.json`.) Running Inception in bf16 would no longer compute the standard
network's fp32 features, so it is not offered.
"""

MFU_INTRO = """\
How far each hot path is from the machine (`python -m bench mfu`, `{source}`): FLOPs
per image of matmuls and convolutions, forward and backward, counted by
`torch.utils.flop_counter.FlopCounterMode` (the FLOPs the step runs); the FLOP/s achieved on 2048
resident images (the textbook through its own DataLoader loop); that over the peak measured in
the same run, a 2048 x 2048 fp32 matmul at {peak:.0f} GFLOP/s on the {cores} cores (an Intel Xeon
host; the earlier runs on this page were on an AMD EPYC host at 144 GFLOP/s); and the
convolutions alone: their share of the time and their FLOPs over their kernels' seconds under
`torch.profiler`, against the same peak:
"""

MFU_NOTES = """\
The fmnist step runs 223.6 MFLOP an image where its model, written plainly, needs 360.8 (the
former MFU run, `cpu-20261205-054032.json`): its residual blocks fuse each upsampling with the
conv after it and each average pool with the conv before it (`gan/resnet.py`: nearest 2x then a
3x3 conv is one stride-2 transposed conv by the kernel's 2x2 box sum; a 3x3 conv then a 2x2 pool
is one stride-2 4x4 conv; the 1x1 shortcuts run on the small side). Same parameters, same
function and gradients to float rounding (tests compare them with the plain formulas, spectral
norm and conditional BatchNorm included), 38% fewer FLOPs, and one upsampled copy per block
instead of two, at half the channels.
Counted against the plain model's 360.8 MFLOP, the step does 143 GFLOP/s of model work, 41% of
the peak (35% before). What keeps it from more is width: its convolutions (24-96 channels,
7-28 px, batch 32) run at 43% of the peak, against 83% for the wide `seed001-v2` DCGAN, and
ReLU, BatchNorm, copies and Adam take the other 40% of its time.

Against the textbook loop of the same residual pair, gan's loop trains 1.65x as many images a
second at the preset's width 24 (the train row, one run): 1.32x from the loop itself (in-memory
uint8 batches, one backward for D's real and fake halves, no per-step host sync; the same loop
with the blocks run plain) and the rest from the fused blocks. `compile=true` adds to that now
(417 against 361 img/s, 1.91x the textbook; only G is compiled, D stays eager under spectral
norm); it costs a compile per process and needs a C++ compiler, so it stays off by default.
The run before the fused blocks measured the loop alone at 1.41x (`cpu-20261205-071249.json`;
ratios move by that much between runs on this host) and compiling G did not help there.

The Fréchet gain is large only at small n: at n <= 2048 the covariance has rank below 2048 and
the n x n path is exact and cheap (44x at 500); at the counts FID is reported at (5k, 10k) both
sides pay a 2048 x 2048 problem and the cached root with `eigh` is 2.2x and 1.9x faster than
`eigvals`.
The three ways give the same distance to within 8e-06 relative (n = 500; 1e-12 at 10k).

Both FID flows give the same number (529.786 each; random-weights Inception, as the standard
file cannot be downloaded on the benchmark machine: times do not depend on the weights). On a
CPU both are dominated by Inception (0.085 s an image), and the folder flow runs it on twice as
many images, so the ratio there stays near 3x; the PNG, file and eigvals overheads it removes
weigh more next to a GPU's Inception.
"""

GROWTH_INTRO = """\
Cost growth, seconds per epoch of the fmnist preset's model (without labels) on the same CPU
(`python -m bench growth`, `{source}`; timed steps, times the steps in an epoch;
in-memory batches cost the same whatever the set's size):
"""

END = """\
`python -m bench --quick` is a fast smoke run of every row; `python -m bench train fid` (or
`--only train,fid`) picks rows; `--fid-n 500,5000` sets the FID row's sample counts (default 500);
`python -m bench report` rewrites this page and its plots from the committed JSON.
"""


def _train(label: str, src: str, r: dict, ref_text: str) -> list[str]:
    gan = f"{r['gan_img_s']:.0f} img/s"
    ratio = f"{r['speedup']:.2f}x"
    if "gan_plain_blocks_img_s" in r:
        gan += (
            f"; gan's loop alone, the blocks run plain as the textbook runs them, "
            f"{r['gan_plain_blocks_img_s']:.0f} img/s"
        )
        ratio += f" (loop alone {r['speedup_plain_blocks']:.2f}x)"
    if "gan_compiled_img_s" in r:
        how = (
            "as `compile=true` runs it (G compiled, D eager under spectral norm) "
            if ("gan_plain_blocks_img_s" in r)
            else "compiled "
        )
        gan += f"; {how}{r['gan_compiled_img_s']:.0f} img/s"
        ratio += f"; compiled {r['speedup_compiled']:.2f}x"
    return [label.format(src=src), gan, f"{r['textbook_img_s']:.0f} img/s{ref_text}", ratio]


def _fid(label: str, src: str, r: dict, first_row: bool) -> list[str]:
    later = r["ours_s"] / r["compiled_s"]
    if first_row:
        gan = (
            f"{r['ours_s']:.1f} s in memory, cached real statistics (Inception's forward passes "
            f"{r['ours_inception_share']:.1%} of it); with `fid_compile=true` "
            f"{r['compiled_first_s']:.1f} s for the first evaluation of a process (the compile "
            f"included), {r['compiled_s']:.1f} s for every later one ({later:.2f}x)"
        )
        ref = (
            "the PNG-folder flow (write n generated + n real PNGs, torch-fidelity on two folders): "
            f"real statistics recomputed {r['seed004_s']:.1f} s; with torch-fidelity's own cache "
            f"of them {r['folder_cached_s']:.1f} s"
        )
    else:
        gan = (
            f"{r['ours_s']:.1f} s (Inception {r['ours_inception_share']:.1%}); compiled "
            f"{r['compiled_first_s']:.1f} s first, {r['compiled_s']:.1f} s later ({later:.2f}x)"
        )
        ref = f"recomputed {r['seed004_s']:.1f} s; cached {r['folder_cached_s']:.1f} s"
    cached, cached_first = (r["folder_cached_s"] / r[k] for k in ("compiled_s", "compiled_first_s"))
    ratio = (
        f"{r['ratio']:.2f}x{' recomputed' if first_row else ''}, {r['ratio_vs_folder_cached']:.2f}x"
        f"{' cached' if first_row else ''}; compiled {r['ratio_compiled']:.2f}x and "
        f"{cached:.2f}x ({r['ratio_compiled_first']:.2f}x and {cached_first:.2f}x"
        f"{' for the first evaluation' if first_row else ' first'})"
    )
    return [label.format(src=src), gan, ref, ratio]


def _fid_pair(label: str, src: str, rows: list[dict]) -> list[str]:
    a, b = rows
    gan = (
        f"n={a['n']}: {a['ours_s']:.1f} s; n={b['n']}: {b['ours_s']:.1f} s: in memory, cached real "
        f"statistics; Inception's forward passes are {a['ours_inception_share']:.1%} and "
        f"{b['ours_inception_share']:.1%} of it"
    )
    ref = (
        f"the folder flow, real statistics recomputed {a['seed004_s']:.1f} s / "
        f"{b['seed004_s']:.1f} s; with torch-fidelity's cache {a['folder_cached_s']:.1f} s / "
        f"{b['folder_cached_s']:.1f} s"
    )
    ratio = (
        f"{a['ratio']:.2f}x / {b['ratio']:.2f}x recomputed; {a['ratio_vs_folder_cached']:.2f}x / "
        f"{b['ratio_vs_folder_cached']:.2f}x cached"
    )
    return [label.format(src=src), gan, ref, ratio]


def _frechet(label: str, src: str, rows: list[dict]) -> list[str]:
    gan = "; ".join(f"n={r['n']}: {r['ours_s']:.2f} s" for r in rows)
    gan += ": cached root of the real covariance, an n x n eigenproblem while n <= 2048"
    ref = " / ".join(f"{r['eigvals_s']:.1f}" for r in rows)
    ref += " s: `eigvals` of the product, as torch-fidelity does"
    return [label.format(src=src), gan, ref, " / ".join(f"{r['ratio_vs_eigvals']}x" for r in rows)]


def _packing(label: str, src: str, packing) -> list[str]:
    if isinstance(packing, str):
        return [label.format(src=src), "pending: needs a GPU", "", ""]
    agg = " / ".join(f"{r['aggregate_img_s']:.0f}" for r in packing)
    ratio = " / ".join(f"{r['vs_one_trial']:.2f}x" for r in packing)
    return [label.format(src=src), f"{agg} img/s", f"{packing[0]['aggregate_img_s']:.0f}", ratio]


def _asha(label: str, src: str, asha: dict) -> list[str]:
    a, f = asha["asha"], asha["full"]
    worse = "a worse winner" if a["best_metric"] > f["best_metric"] else "the same winner"
    return [
        label.format(src=src),
        f"{a['trial_epochs']} trial-epochs, best fd_domain {a['best_metric']:.2f}, "
        f"{a['wall_s']:.0f} s",
        f"{f['trial_epochs']} trial-epochs, best fd_domain {f['best_metric']:.2f}, "
        f"{f['wall_s']:.0f} s",
        f"{asha['epochs_saved']:.0%} fewer epochs, {worse} (see "
        "[the quick tune](#the-quick-tune-before-and-after))",
    ]


def _quick(label: str, src: str, q: dict) -> list[str]:
    b, n = q["before"], q["now"]
    return [
        label.format(src=src),
        f"winner fd_domain {n['winner_10k']['fd_domain']:.2f} (10k vs test), rarest class "
        f"{n['winner_10k']['class_coverage_min']:.1%}, {n['wall_s']:.0f} s",
        f"{b['winner_10k']['fd_domain']:.2f}, {b['winner_10k']['class_coverage_min']:.1%}, "
        f"{b['wall_s']:.0f} s (`{b['config']}`)",
        f"{q['fd_domain_ratio']:.2f}x fd_domain, {q['wall_ratio']:.2f}x wall",
    ]


TEXTBOOK_LOOP = (
    ": a textbook loop of the same model (DataLoader with 2 workers, per-image transforms, "
    "separate real and fake backward passes, a host sync per step, the residual blocks as "
    "SNGAN's code writes them)"
)


def rows_table(res: dict, src: dict) -> str:
    """The table of rows, each from the JSON named in src (a row key: a file name)."""
    amd = res["train_amd"]["train"][0]
    before = (
        "the same before the fused blocks (`{src}`; on the AMD host of "
        f"`{src['train_amd']}`: {amd['gan_img_s']:.0f} against {amd['textbook_img_s']:.0f} "
        f"img/s, {amd['speedup']:.2f}x)"
    )
    fid = "{n} generated images (`--fid-n {n}`, `{{src}}`)"
    rows = [
        _train(
            "training, the `fmnist` preset's residual pair (width 24, batch 32; without its "
            "labels, as the textbook loop has none), 10k images (`python -m bench train`, `{src}`, "
            "the Intel host of the MFU rows)",
            src["train"],
            res["train"]["train"][0],
            TEXTBOOK_LOOP,
        ),
        _train(before, src["train_before_fused"], res["train_before_fused"]["train"][0], ""),
        _train(
            "training, the former `fmnist` preset's pair (width 16, batch 32; before the fused "
            "blocks, `{src}`)",
            src["train_w16"],
            res["train_w16"]["train"][0],
            ", same textbook loop",
        ),
        _train(
            "training, DCGAN width 64, batch 128, 10k images (an earlier fmnist preset; `{src}`)",
            src["train"],
            res["train"]["train"][1],
            ", same textbook loop",
        ),
        _train(
            "training, narrow DCGAN of the former `quick.yaml` (width 16, batch 64)",
            src["train_narrow"],
            res["train_narrow"]["train"][1],
            ", same textbook loop",
        ),
        _fid(
            "one FID evaluation, 5000 generated images, with `fid_compile=true` (`python -m bench "
            "fid --fid-n 5000`, `{src}`, random-weights Inception: the standard file's layout and "
            "cost)",
            src["fid_5000"],
            res["fid_5000"]["fid"][0],
            first_row=True,
        ),
        _fid(
            "the same at " + fid.format(n=10000),
            src["fid_10000"],
            res["fid_10000"]["fid"][0],
            False,
        ),
        _fid("the same at " + fid.format(n=500), src["fid_500"], res["fid_500"]["fid"][0], False),
        _fid_pair(
            "one FID evaluation, 500 and 5000 generated images (`python -m bench fid --fid-n "
            "500,5000`, `{src}`, same weights)",
            src["fid_500_5000"],
            res["fid_500_5000"]["fid"],
        ),
        _frechet(
            "the Fréchet step on 2048-d features, fake mean and covariance included, at n = 500, "
            "2048, 5000, 10000 (`python -m bench frechet`, `{src}`, an idle host)",
            src["frechet"],
            res["frechet"]["frechet"],
        ),
        _packing(
            "trial packing: aggregate img/s at 1, 2, 4, 8 trials per GPU",
            src["packing"],
            res["packing"]["packing"],
        ),
        _asha(
            "ASHA against every trial to `max_t` (`quick.yaml`, 9 trials; `{src}`)",
            src["quick"],
            res["quick"]["asha"],
        ),
        _quick(
            "the quick tune now against the one it replaced (`python -m bench quick`, same JSON)",
            src["quick"],
            res["quick"]["quick"],
        ),
    ]
    return table(["row", "gan", "reference, same run", "ratio"], "llll", rows)


# the MFU rows as the table names them
HOT_PATHS = {
    "fmnist training step": "fmnist training step (width 24)",
    "seed001-v2 training step": "seed001-v2 training step",
    "textbook DCGAN training step": "textbook DCGAN training step",
    "FID feature extraction (Inception, 299 px)": "FID feature extraction (Inception, 299 px)",
    "FID feature extraction, fid_compile": "the same with `fid_compile=true`",
}


def mfu_table(mfu: dict) -> str:
    """One row per hot path: FLOPs, img/s, FLOP/s and their share of the measured peak."""
    rows = [
        [
            HOT_PATHS.get(name, name),
            f"{r['flops_per_image'] / 1e6:,.1f}",
            r["batch"],
            f"{r['img_s']:.0f}",
            f"{r['achieved_flops'] / 1e9:.1f}",
            f"{r['mfu']:.0%}",
            f"{r['conv_time_share']:.0%}",
            f"{r['conv_mfu']:.0%}",
        ]
        for name, r in mfu["rows"].items()
    ]
    header = ["hot path", "MFLOP per image", "batch", "img/s", "GFLOP/s"]
    header += ["of the fp32 matmul peak", "convolutions: share of the time"]
    header += ["convolutions: of the peak"]
    return table(header, "lrrrrrrr", rows)


def growth_table(growth: list[dict]) -> str:
    """Seconds per epoch, one row per image size, one column per dataset size."""
    counts = sorted({r["images"] for r in growth})
    sizes = sorted({r["image_size"] for r in growth})
    at = {(r["image_size"], r["images"]): r["s_per_epoch"] for r in growth}
    header = ["image size", *(f"{c // 1000}k images" for c in counts)]
    rows = [[f"{s} px", *(f"{at[s, c]:.1f}" for c in counts)] for s in sizes]
    return table(header, "l" * len(header), rows)


def section(res: dict, src: dict, search_section: str) -> str:
    """The section's Markdown: res and src hold each row's JSON and its file name."""
    mfu = res["mfu"]
    m = res["mfu"]["machine"]
    return "\n".join(
        [
            "## Performance\n",
            INTRO.format(**src),
            rows_table(res, src) + "\n",
            FID_NOTES,
            search_section,
            MFU_INTRO.format(
                source=src["mfu"], peak=mfu["mfu"]["peak_flops"]["fp32"] / 1e9, cores=m["cores"]
            ),
            mfu_table(mfu["mfu"]) + "\n",
            MFU_NOTES,
            GROWTH_INTRO.format(source=src["growth"]),
            growth_table(res["growth"]["growth"]) + "\n",
            END,
        ]
    )
