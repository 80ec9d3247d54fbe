# gan-job: the gan CLI, and a Ray head/worker node image for the same code (KubeRay, `ray up`).
# Base: Ray's own GPU image at the ray pin of constraints.txt and CI's Python (3.11). It already has
# what cluster launchers expect of a node (ray with dashboard, bash, rsync, wget) and a non-root
# user `ray` (uid 1000, gid 100, writable HOME for ~/.ray). torch's wheel brings its own CUDA 13
# runtime, so GPU hosts need a driver that supports CUDA 13.
FROM rayproject/ray:2.60.0-py311-gpu
# numeric, so that Kubernetes' runAsNonRoot can check it
USER 1000:100
# baked assets live outside the volumes, so that mounting a volume cannot hide them
ENV TORCH_HOME=/home/ray/.cache/torch \
    GAN_FID_WEIGHTS=/home/ray/assets/weights-inception-2015-12-05-6726825d.pth \
    GAN_FMNIST_DIR=/home/ray/assets/FashionMNIST/raw
# made by this user before WORKDIR and VOLUME would make them root-owned and unwritable
RUN mkdir -p /home/ray/gan-job/data /home/ray/gan-job/results /home/ray/gan-job/runs "$TORCH_HOME"
WORKDIR /home/ray/gan-job
# dependencies (and the serve, optuna, pb2, mlflow and wandb extras) before sources, so a code change keeps this layer; versions
# from constraints.txt, as in CI
COPY --chown=1000:100 pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *(d for x in ('serve', 'optuna', 'pb2', 'mlflow', 'wandb') for d in p['optional-dependencies'][x]), sep='\n')" > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
# the standard FID Inception weights (hash-checked; URL from torch-fidelity) and Fashion-MNIST
RUN python -c "import torch, torchvision.datasets as d, torch_fidelity.feature_extractor_inceptionv3 as i; \
torch.hub.load_state_dict_from_url(i.URL_INCEPTION_V3, model_dir='/home/ray/assets', check_hash=True); \
[d.FashionMNIST('/home/ray/assets', train=t, download=True) for t in (True, False)]"
COPY --chown=1000:100 . .
RUN pip install --no-cache-dir --no-deps .
VOLUME ["/home/ray/gan-job/data", "/home/ray/gan-job/results", "/home/ray/gan-job/runs", "/home/ray/.cache/torch"]
ENTRYPOINT ["gan-entrypoint"]
CMD ["--help"]
