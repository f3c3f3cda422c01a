# Finds LibTorch for our build and for a program that uses the installed package
# (ddpm-config.cmake includes this file): Torch_DIR / CMAKE_PREFIX_PATH first, else the torch of a
# Python interpreter (DDPM_PYTHON, else the first python3 on PATH), with pip's CUDA libraries
# for a CUDA build of torch (DdpmPipCuda.cmake). Sets Torch_FOUND; never fails by itself.
include("${CMAKE_CURRENT_LIST_DIR}/DdpmPipCuda.cmake")

# A pip torch named by Torch_DIR or CMAKE_PREFIX_PATH (torch.utils.cmake_prefix_path) needs its
# CUDA libraries pointed at as much as one found through Python does.
set(ddpm_torch_prefixes ${CMAKE_PREFIX_PATH})
if(Torch_DIR)
  get_filename_component(ddpm_torch_dir_prefix "${Torch_DIR}/.." ABSOLUTE)
  list(PREPEND ddpm_torch_prefixes "${ddpm_torch_dir_prefix}")
endif()
foreach(ddpm_torch_prefix IN LISTS ddpm_torch_prefixes)
  if(EXISTS "${ddpm_torch_prefix}/Torch/TorchConfig.cmake")
    ddpm_use_pip_cuda("${ddpm_torch_prefix}")
    break()
  endif()
endforeach()

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
        ddpm_use_pip_cuda("${DDPM_TORCH_PREFIX}")
      endif()
    endif()
  endif()
  find_package(Torch QUIET)
endif()
