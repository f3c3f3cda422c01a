# ddpm in a container, CPU or CUDA, built from Debian's packages and Python wheels only (no
# NVIDIA apt repository, no PyTorch index), online or offline. Two stages:
#   build    Debian + g++ and the C++ dependencies from Debian, a venv with torch, CMake and
#            Ninja (and, for CUDA, nvcc and the CUDA runtime headers from PyPI's nvidia-cuda-*
#            wheels); ddpm built and installed into /opt/ddpm (binary, libddpm, headers,
#            configs); the venv stripped to what the binary and torchrun need at run time.
#   runtime  Debian + python3 and the shared libraries ddpm links, /opt/ddpm, the stripped venv
#            (LibTorch's and CUDA's libraries, torchrun), a non-root user, `ddpm` as entry point.
#
# Online (wheels from PyPI):
#   docker build -t ddpm:cpu .
#   docker build -t ddpm:cuda --build-arg VARIANT=cuda .
# Offline, for air-gapped clusters: fetch the wheels on a connected host into the build context,
# then build without any index (`scripts/docker_wheels.sh`; docker/wheels/README.md):
#   scripts/docker_wheels.sh cpu && docker build -t ddpm:cpu --build-arg OFFLINE=1 .
# Run:
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/runs:/runs" ddpm:cuda \
#       train --config /opt/ddpm/share/ddpm/configs/cifar10.json --data /data/cifar10 --out /runs/c
# scripts/docker_check.sh builds the CPU image offline and runs it (README, "Docker").

# Every version is a build argument. The base image: Debian 12.15, a fixed point release (the
# moving tag debian:bookworm gives builds months apart different systems). For a build that
# must be byte-for-byte the same base, name it by digest: --build-arg
# BASE_IMAGE=debian:12.15@sha256:... Where no registry can be reached, scripts/docker_check.sh
# makes it with debootstrap (from the machine's own apt source) and imports it under this name
# after checking that it is this release.
ARG BASE_IMAGE=debian:12.15

FROM ${BASE_IMAGE} AS build
ARG VARIANT=cpu
# The CPU variant takes torch's CPU build, the CUDA variant its CUDA 13.0 build.
ARG TORCH_CPU=torch==2.13.0
ARG TORCH_CUDA=torch==2.14.1
ARG CMAKE_VERSION=cmake==4.4.5
ARG NINJA_VERSION=ninja==1.13.2
# nvcc with its front end (crt, nvvm) of the same release: a newer nvvm writes PTX that this
# ptxas refuses.
ARG CUDA_WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"
ARG OFFLINE=0
ARG JOBS=
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates g++ python3 python3-venv \
      libcxxopts-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgloo-dev libwebp-dev \
      libtiff-dev \
 && rm -rf /var/lib/apt/lists/*
# docker/wheels/VARIANT holds the wheels of scripts/docker_wheels.sh (only a README online).
COPY docker/wheels/${VARIANT} /wheels
RUN set -eu; \
    case "$VARIANT" in \
      cpu) packages="$TORCH_CPU" ;; \
      cuda) packages="$TORCH_CUDA $CUDA_WHEELS" ;; \
      *) echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 2 ;; \
    esac; \
    source=""; [ "$OFFLINE" = 1 ] && source="--no-index"; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $source \
      --find-links /wheels $packages "$CMAKE_VERSION" "$NINJA_VERSION"
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY configs configs
# The default feature network of `ddpm eval`, installed into share/ddpm/feature-nets.
COPY data/feature-nets/fashion_mnist.pt data/feature-nets/
# ddpm compile's Python half, which the build puts into the binary.
COPY scripts/compile_package.py scripts/ddpm_unet.py scripts/
# The CUDA variant finds nvcc and the CUDA runtime in the nvidia-cuda-* wheels (nvidia/cu13).
# The wheels ship versioned libraries only (libcudart.so.13), in lib/: CMake's FindCUDAToolkit
# looks for the unversioned names and nvcc links from lib64/, so both get links.
RUN set -eu; \
    cuda=/opt/venv/lib/python3.11/site-packages/nvidia/cu13; \
    if [ "$VARIANT" = cuda ]; then \
      export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda"; \
      [ -e "$cuda/lib64" ] || ln -s lib "$cuda/lib64"; \
      for lib in "$cuda"/lib/lib*.so.*; do \
        plain="${lib%.so.*}.so"; [ -e "$plain" ] || ln -s "$(basename "$lib")" "$plain"; \
      done; \
    fi; \
    /opt/venv/bin/cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_MAKE_PROGRAM=/opt/venv/bin/ninja -DDDPM_PYTHON=/opt/venv/bin/python \
      -DDDPM_BUILD_TESTS=OFF \
 && /opt/venv/bin/cmake --build build ${JOBS:+--parallel $JOBS} \
 && /opt/venv/bin/cmake --install build --prefix /opt/ddpm --strip
# `ddpm compile` runs in this stage: it has torch's Python with LibTorch's headers and g++,
# which AOTInductor compiles its kernels with (docs/COMPILE.md):
#   docker build --target build -t ddpm:build .
#   docker run --rm -v "$PWD/runs:/runs" ddpm:build /opt/ddpm/bin/ddpm compile \
#       --checkpoint /runs/c --out /runs/c/model.pt2
# The runtime stage samples such a package without Python.

FROM build AS slim
# What runs need of the venv: torch's libraries and Python code (for torchrun: `import torch`
# also wants torchgen and torch/bin/torch_shm_manager) with its dependencies. Not: LibTorch's
# headers and CMake files, static libraries, torch's test binaries, Triton (torch.compile's
# kernel compiler, 729 MB in the CUDA image), CMake, Ninja, pip, nvcc and the CUDA headers.
RUN set -eu; \
    site=/opt/venv/lib/python3.11/site-packages; \
    /opt/venv/bin/pip uninstall -y --disable-pip-version-check cmake ninja triton nvidia-nvvm \
      nvidia-cuda-nvcc nvidia-cuda-crt nvidia-cuda-cccl >/dev/null 2>&1 || true; \
    rm -rf "$site/torch/include" "$site/torch/share" "$site/torch/test" \
           "$site/torch/lib/libtorchbind_test.so" "$site/pip" \
           "$site/setuptools" "$site"/pip-*.dist-info /opt/venv/include; \
    find "$site/torch/bin" -type f ! -name torch_shm_manager -delete; \
    find "$site" -name '*.a' -delete; \
    find "$site" -name __pycache__ -prune -exec rm -rf {} +; \
    rm -rf "$site"/nvidia/cu13/include "$site"/nvidia/*/include

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# The libraries the binary links besides LibTorch (`ldd /opt/ddpm/bin/ddpm`), and python3 for
# torchrun.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libspdlog1.10 libfmt9 libstb0 libwebp7 \
      libwebpdemux2 libtiff6 \
 && rm -rf /var/lib/apt/lists/*
# The same paths as in the build stage: the binary's RUNPATH names them.
COPY --from=slim /opt/venv /opt/venv
COPY --from=slim /opt/ddpm /opt/ddpm
RUN useradd --create-home --uid 1000 ddpm \
 && ln -s /opt/ddpm/share/ddpm/configs /opt/ddpm/configs
ENV PATH=/opt/ddpm/bin:/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER ddpm
WORKDIR /runs
ENTRYPOINT ["ddpm"]
CMD ["--help"]
