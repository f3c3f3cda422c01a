# Finds every dependency from the system (or an installed Python torch) and stops with a
# message that says how to install whatever is missing. Sets DDPM_WITH_CUDA.

set(DDPM_APT_HINT "Install it with: sudo apt-get install libcxxopts-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgloo-dev libgtest-dev libwebp-dev libtiff-dev  (or run scripts/setup.sh)")

include(DdpmFindTorch)
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

  # WebP and TIFF decoding (formats/webp_image.h, tiff_image.h): Debian's libwebp-dev (with its
  # demuxer, for animations) and libtiff-dev, found as the stb library is.
  find_path(DDPM_WEBP_INCLUDE_DIR webp/decode.h)
  find_library(DDPM_WEBP_LIBRARY webp)
  find_library(DDPM_WEBPDEMUX_LIBRARY webpdemux)
  find_library(DDPM_WEBPMUX_LIBRARY webpmux)  # the tests' animation encoder
  find_path(DDPM_TIFF_INCLUDE_DIR tiffio.h)
  find_library(DDPM_TIFF_LIBRARY tiff)
  if(NOT DDPM_WEBP_INCLUDE_DIR OR NOT DDPM_WEBP_LIBRARY OR NOT DDPM_WEBPDEMUX_LIBRARY)
    message(FATAL_ERROR "libwebp (webp/decode.h, libwebp, libwebpdemux) was not found. "
                        "${DDPM_APT_HINT}")
  endif()
  if(NOT DDPM_TIFF_INCLUDE_DIR OR NOT DDPM_TIFF_LIBRARY)
    message(FATAL_ERROR "libtiff (tiffio.h, libtiff) was not found. ${DDPM_APT_HINT}")
  endif()
  add_library(ddpm_image_codecs INTERFACE)
  target_include_directories(ddpm_image_codecs INTERFACE "${DDPM_WEBP_INCLUDE_DIR}"
                                                         "${DDPM_TIFF_INCLUDE_DIR}")
  target_link_libraries(ddpm_image_codecs INTERFACE "${DDPM_WEBP_LIBRARY}"
                        "${DDPM_WEBPDEMUX_LIBRARY}" "${DDPM_TIFF_LIBRARY}")
  set(DDPM_WITH_WEBP ON)
  set(DDPM_WITH_TIFF ON)

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
# Every target compiles position-independent code with hidden symbols: the objects go into the
# shared libddpm, which exports only DDPM_API (visibility.h), and all targets share one
# precompiled header, which needs the same flags everywhere.
function(ddpm_set_target_options target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -fPIC -fvisibility=hidden -fvisibility-inlines-hidden)
  endif()
  if(DDPM_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
