# ddpm for GPU servers. Two stages:
#   build    Debian 12 (the CI machine's system) + NVIDIA's CUDA 13.0 compiler, then exactly
#            what CI runs: scripts/test.sh (system packages, .venv with pip's torch 2.14.1 for
#            CUDA 13.0, the CMake build, the whole test suite; GPU tests skip without a GPU).
#   runtime  Debian 12 slim with the ddpm binary, the runtime libraries it links, and the
#            virtual environment (LibTorch's libraries and CUDA's, plus torchrun for several GPUs).
#
#   docker build -t ddpm .
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/runs:/runs" ddpm \
#       train --config /opt/ddpm/configs/cifar10.json --data /data/cifar10 --out /runs/cifar10
#
# See README.md, "Scaling out", for torchrun and Slurm inside the container.

ARG DEBIAN_IMAGE=debian:12.11-slim
ARG CUDA_KEYRING_URL=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb

FROM ${DEBIAN_IMAGE} AS build
ARG CUDA_KEYRING_URL
# pip's torch for CUDA 13.0 from PyTorch's index; everything else (cmake, ninja, diffusers)
# from PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates wget \
 && wget -qO /tmp/cuda-keyring.deb "${CUDA_KEYRING_URL}" \
 && dpkg -i /tmp/cuda-keyring.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      cuda-nvcc-13-0 cuda-cudart-dev-13-0 cuda-nvtx-13-0 cuda-profiler-api-13-0 \
      g++ git pkg-config python3 python3-venv python3-pip \
      libcxxopts-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgloo-dev libgtest-dev \
 && rm -rf /var/lib/apt/lists/* /tmp/cuda-keyring.deb
ENV PATH=/usr/local/cuda-13.0/bin:$PATH \
    PIP_INDEX_URL=${TORCH_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=https://pypi.org/simple \
    DDPM_TORCH=torch==2.14.1
WORKDIR /opt/ddpm
COPY . .
# A build directory or venv from the host would hold the host's paths: start clean.
RUN rm -rf build .venv && bash .ci/run

FROM ${DEBIAN_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# The shared libraries ddpm links besides LibTorch (see `ldd build/ddpm`), and python3 for
# the virtual environment's torchrun.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libspdlog1.10 libfmt9 libstb0 libgomp1 python3 \
 && rm -rf /var/lib/apt/lists/*
# Same paths as in the build stage: the binary's RUNPATH names them.
COPY --from=build /opt/ddpm/.venv /opt/ddpm/.venv
COPY --from=build /opt/ddpm/build/ddpm /opt/ddpm/build/ddpm
COPY --from=build /opt/ddpm/configs /opt/ddpm/configs
RUN ln -s /opt/ddpm/build/ddpm /usr/local/bin/ddpm \
 && ln -s /opt/ddpm/.venv/bin/torchrun /usr/local/bin/torchrun
# What the NVIDIA container runtime reads to mount the driver and the GPUs.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /runs
ENTRYPOINT ["ddpm"]
CMD ["--help"]
