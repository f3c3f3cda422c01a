# A CUDA build of torch from pip carries the CUDA libraries and headers it was built with
# (site-packages/nvidia/cu*/), while the machine may have only a partial toolkit (nvcc and
# cudart). LibTorch's CMake config needs nvcc, nvrtc and the library headers: point it at both.
# Caches DDPM_PIP_CUDA_INCLUDE_DIR when the pip CUDA headers exist.

function(ddpm_use_pip_cuda torch_cmake_prefix)
  get_filename_component(site_packages "${torch_cmake_prefix}/../../.." ABSOLUTE)
  file(GLOB cuda_roots LIST_DIRECTORIES true "${site_packages}/nvidia/cu[0-9]*")
  if(NOT cuda_roots)
    return()
  endif()
  list(GET cuda_roots 0 cuda_root)

  if(NOT CUDA_TOOLKIT_ROOT_DIR AND NOT DEFINED ENV{CUDA_HOME} AND NOT DEFINED ENV{CUDA_PATH})
    find_package(CUDAToolkit QUIET)
    if(CUDAToolkit_FOUND)
      get_filename_component(toolkit_root "${CUDAToolkit_BIN_DIR}/.." ABSOLUTE)
      set(CUDA_TOOLKIT_ROOT_DIR "${toolkit_root}" CACHE PATH "CUDA toolkit (nvcc)")
    endif()
  endif()

  if(NOT CUDA_nvrtc_LIBRARY)
    file(GLOB nvrtc "${cuda_root}/lib/libnvrtc.so*")
    list(FILTER nvrtc EXCLUDE REGEX "builtins|alt")
    if(nvrtc)
      list(GET nvrtc 0 nvrtc)
      # FindCUDAToolkit may have cached NOTFOUND here already: replace it.
      set(CUDA_nvrtc_LIBRARY "${nvrtc}" CACHE FILEPATH "nvrtc from the pip CUDA libraries" FORCE)
    endif()
  endif()

  if(EXISTS "${cuda_root}/include/cublas_v2.h")
    set(DDPM_PIP_CUDA_INCLUDE_DIR "${cuda_root}/include" CACHE PATH "CUDA library headers from pip")
    message(STATUS "CUDA library headers from pip: ${cuda_root}/include")
  endif()
endfunction()
