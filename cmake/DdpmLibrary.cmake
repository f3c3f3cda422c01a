# libddpm, the library a C++ product links (include/ddpm/ddpm.h), its install rules and the CMake
# package: `find_package(ddpm CONFIG REQUIRED)` and `target_link_libraries(app PRIVATE ddpm::ddpm)`.
# Shared by default (DDPM_SHARED_LIBRARY), exporting the DDPM_API symbols only (hidden
# visibility, and a version script that keeps LibTorch's inline code out of the dynamic symbol
# table); static otherwise. Either way it holds every object of ddpm_objects and ddpm_log, and
# LibTorch comes with the target.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Installed, the binary and the library find LibTorch (and a CUDA build's libraries) where they
# were linked from: pip's torch is not on the system's library path.
set(DDPM_INSTALL_RPATH "${TORCH_INSTALL_PREFIX}/lib")
if(CUDAToolkit_LIBRARY_DIR)
  list(APPEND DDPM_INSTALL_RPATH "${CUDAToolkit_LIBRARY_DIR}")
endif()
if(DDPM_PIP_CUDA_INCLUDE_DIR)
  get_filename_component(ddpm_pip_cuda_lib "${DDPM_PIP_CUDA_INCLUDE_DIR}/../lib" ABSOLUTE)
  list(APPEND DDPM_INSTALL_RPATH "${ddpm_pip_cuda_lib}")
endif()

if(DDPM_SHARED_LIBRARY)
  set(ddpm_library_type SHARED)
else()
  set(ddpm_library_type STATIC)
endif()
add_library(ddpm_library ${ddpm_library_type}
  $<TARGET_OBJECTS:ddpm_objects> $<TARGET_OBJECTS:ddpm_log>)
add_library(ddpm::ddpm ALIAS ddpm_library)
set_target_properties(ddpm_library PROPERTIES
  OUTPUT_NAME ddpm
  EXPORT_NAME ddpm
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
  INSTALL_RPATH "${DDPM_INSTALL_RPATH}")
target_include_directories(ddpm_library PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(ddpm_library PUBLIC cxx_std_20)
# LibTorch is part of the interface (ddpm_tensor.h); the rest is linked in, or, for the static
# library, named for the program's link.
target_link_libraries(ddpm_library PUBLIC torch)
target_link_libraries(ddpm_library PRIVATE spdlog::spdlog ${DDPM_TORCH_OPENMP})
if(DDPM_SHARED_LIBRARY)
  target_link_libraries(ddpm_library PRIVATE ddpm_stb ddpm_image_codecs)
elseif(DDPM_CARRIED_DEPS)
  message(FATAL_ERROR "A static libddpm (DDPM_SHARED_LIBRARY=OFF) names the system's stb and "
                      "spdlog for the program's link: build it without DDPM_CARRIED_DEPS")
else()
  target_link_libraries(ddpm_library PRIVATE "${DDPM_STB_LIBRARY}" "${DDPM_WEBP_LIBRARY}"
                        "${DDPM_WEBPDEMUX_LIBRARY}" "${DDPM_TIFF_LIBRARY}")
endif()
if(DDPM_SHARED_LIBRARY AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(ddpm_symbols "${PROJECT_SOURCE_DIR}/cmake/libddpm.map")
  target_link_options(ddpm_library PRIVATE "LINKER:--version-script=${ddpm_symbols}"
                      "LINKER:--no-undefined")
  set_target_properties(ddpm_library PROPERTIES LINK_DEPENDS "${ddpm_symbols}")
endif()

# The public headers: the API and what it includes, nothing internal.
set(ddpm_public_headers
  include/ddpm/ddpm.h
  include/ddpm/ddpm_tensor.h
  include/ddpm/error.h
  include/ddpm/visibility.h)

install(TARGETS ddpm_library EXPORT ddpmTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${ddpm_public_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ddpm)
set(ddpm_package_dir ${CMAKE_INSTALL_LIBDIR}/cmake/ddpm)
install(EXPORT ddpmTargets NAMESPACE ddpm:: DESTINATION ${ddpm_package_dir})
configure_package_config_file(cmake/ddpm-config.cmake.in
  "${PROJECT_BINARY_DIR}/ddpm-config.cmake" INSTALL_DESTINATION ${ddpm_package_dir})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/ddpm-config-version.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/ddpm-config.cmake"
              "${PROJECT_BINARY_DIR}/ddpm-config-version.cmake"
              cmake/DdpmFindTorch.cmake cmake/DdpmPipCuda.cmake
        DESTINATION ${ddpm_package_dir})
