# Finds every dependency from the system (or an installed Python torch) and stops with a
# message that says how to install whatever is missing. Sets DDPM_WITH_CUDA.

set(DDPM_APT_HINT "Install it with: sudo apt-get install libcxxopts-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgloo-dev libgtest-dev  (or run scripts/setup.sh)")

# LibTorch: Torch_DIR / CMAKE_PREFIX_PATH first, else the torch of a Python interpreter
# (DDPM_PYTHON, else the first python3 on PATH).
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  if(NOT DDPM_PYTHON)
    find_program(DDPM_PYTHON NAMES python3 python)
  endif()
  if(DDPM_PYTHON)
    execute_process(
      COMMAND "${DDPM_PYTHON}" -c
              "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.version.cuda or '')"
      OUTPUT_VARIABLE DDPM_TORCH_QUERY_OUTPUT OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE DDPM_TORCH_QUERY ERROR_QUIET)
    if(DDPM_TORCH_QUERY EQUAL 0)
      string(REPLACE "\n" ";" DDPM_TORCH_QUERY_OUTPUT "${DDPM_TORCH_QUERY_OUTPUT}")
      list(GET DDPM_TORCH_QUERY_OUTPUT 0 DDPM_TORCH_PREFIX)
      message(STATUS "LibTorch from Python torch: ${DDPM_TORCH_PREFIX}")
      list(APPEND CMAKE_PREFIX_PATH "${DDPM_TORCH_PREFIX}")
      list(LENGTH DDPM_TORCH_QUERY_OUTPUT DDPM_TORCH_QUERY_LINES)
      if(DDPM_TORCH_QUERY_LINES GREATER 1)
        include(DdpmPipCuda)
        ddpm_use_pip_cuda("${DDPM_TORCH_PREFIX}")
      endif()
    endif()
  endif()
  find_package(Torch QUIET)
endif()
if(NOT Torch_FOUND)
  message(FATAL_ERROR
    "LibTorch 2.x was not found.\n"
    "Either pass -DTorch_DIR=/path/to/libtorch/share/cmake/Torch (or CMAKE_PREFIX_PATH), or install "
    "torch into the Python that CMake finds (pip install torch) and pass -DDDPM_PYTHON=/path/to/python. "
    "scripts/setup.sh does all of this in a virtual environment.")
endif()
if(Torch_VERSION VERSION_LESS 2.0)
  message(FATAL_ERROR "LibTorch ${Torch_VERSION} is too old: this project needs LibTorch 2.x.")
endif()

if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(DDPM_WITH_CUDA ON)
else()
  set(DDPM_WITH_CUDA OFF)
endif()
message(STATUS "LibTorch ${Torch_VERSION}, CUDA code paths: ${DDPM_WITH_CUDA}")

# LibTorch's OpenMP runtime. at::parallel_for compiles its OpenMP region into the caller, so our
# own CPU kernels (group_norm_swish.cpp) need -fopenmp and must run on the libgomp that LibTorch
# runs on, never on a second runtime. pip's torch ships it as lib/libgomp.so.1; where it is not
# found, those kernels are built without OpenMP and run on one thread.
find_library(DDPM_TORCH_OPENMP NAMES libgomp.so.1 PATHS "${TORCH_INSTALL_PREFIX}/lib"
             NO_DEFAULT_PATH)
if(DDPM_TORCH_OPENMP AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  message(STATUS "LibTorch's OpenMP runtime: ${DDPM_TORCH_OPENMP}")
else()
  message(STATUS "LibTorch's OpenMP runtime not found: our CPU kernels run on one thread")
  set(DDPM_TORCH_OPENMP "")
endif()

if(DDPM_CARRIED_DEPS)
  include(DdpmCarriedDeps)  # a machine where nothing can be installed: see that file
else()
  macro(ddpm_require_package name)
    find_package(${name} ${ARGN} QUIET)
    if(NOT ${name}_FOUND)
      message(FATAL_ERROR "${name} was not found. ${DDPM_APT_HINT}")
    endif()
  endmacro()

  ddpm_require_package(cxxopts)
  ddpm_require_package(nlohmann_json 3)
  ddpm_require_package(spdlog)

  # stb ships headers plus a library with the implementations (Debian's libstb-dev).
  find_path(DDPM_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
  find_library(DDPM_STB_LIBRARY stb)
  if(NOT DDPM_STB_INCLUDE_DIR OR NOT DDPM_STB_LIBRARY)
    message(FATAL_ERROR "stb (stb_image.h and libstb) was not found. ${DDPM_APT_HINT}")
  endif()
  add_library(ddpm_stb INTERFACE)
  target_include_directories(ddpm_stb INTERFACE "${DDPM_STB_INCLUDE_DIR}")
  target_link_libraries(ddpm_stb INTERFACE "${DDPM_STB_LIBRARY}")

  # c10d's Gloo backend is compiled into LibTorch, but LibTorch's headers for it include Gloo's
  # own headers, which pip's torch does not ship: take them (headers only, nothing is linked) from
  # the system (Debian's libgloo-dev).
  find_path(DDPM_GLOO_INCLUDE_DIR gloo/algorithm.h)
  if(NOT DDPM_GLOO_INCLUDE_DIR)
    message(FATAL_ERROR "Gloo's headers (gloo/algorithm.h) were not found. ${DDPM_APT_HINT}")
  endif()

  if(DDPM_BUILD_TESTS)
    ddpm_require_package(GTest)
  endif()
endif()

# NCCL's header for c10d's NCCL backend: pip's CUDA torch carries it in nvidia/nccl/include.
if(DDPM_WITH_CUDA)
  find_path(DDPM_NCCL_INCLUDE_DIR nccl.h HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include")
  if(NOT DDPM_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "nccl.h was not found for the CUDA build. Install NCCL's development "
                        "files (sudo apt-get install libnccl-dev), or use pip's CUDA torch, "
                        "which ships them (scripts/setup.sh).")
  endif()
endif()

if(DDPM_BUILD_TESTS)
  find_package(Python3 COMPONENTS Interpreter QUIET)
endif()

# Warnings on for project code only; LibTorch's own headers are included as system headers.
function(ddpm_set_target_options target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(DDPM_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
