# Dependency discovery: LibTorch (the pinned torch wheel), MPI, HDF5, glog, gflags, libpng,
# nlohmann-json, protobuf (optional: TensorBoard event files).
# glog and gflags are found through their CMake packages where they work and by path otherwise
# (the GPU host brings them as unpacked Debian packages whose glog config asks for Unwind).

find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(PNG REQUIRED)
find_package(ZLIB REQUIRED)
find_package(JPEG QUIET)
message(STATUS "unidiff: JPEG decoding ${JPEG_FOUND}")
find_package(Threads REQUIRED)
# JSON (safetensors headers, diffusers configs): Debian's nlohmann-json3-dev, header-only.
find_package(nlohmann_json 3.9 REQUIRED)
# protobuf (Debian's libprotobuf-dev + protobuf-compiler): TensorBoard event files; optional.
find_package(Protobuf QUIET)
if(Protobuf_FOUND AND Protobuf_PROTOC_EXECUTABLE)
  set(UNIDIFF_TENSORBOARD ON)
else()
  set(UNIDIFF_TENSORBOARD OFF)
endif()
message(STATUS "unidiff: TensorBoard event files ${UNIDIFF_TENSORBOARD} (protobuf ${Protobuf_VERSION} ${Protobuf_INCLUDE_DIRS})")

# --- gflags -----------------------------------------------------------------------------------
find_package(gflags CONFIG QUIET)
if(TARGET gflags::gflags)
  set(UNIDIFF_GFLAGS gflags::gflags)
elseif(TARGET gflags)
  set(UNIDIFF_GFLAGS gflags)
else()
  find_path(GFLAGS_INCLUDE_DIR gflags/gflags.h REQUIRED)
  find_library(GFLAGS_LIBRARY gflags REQUIRED)
  add_library(unidiff_gflags INTERFACE)
  target_include_directories(unidiff_gflags INTERFACE ${GFLAGS_INCLUDE_DIR})
  target_link_libraries(unidiff_gflags INTERFACE ${GFLAGS_LIBRARY})
  set(UNIDIFF_GFLAGS unidiff_gflags)
endif()

# --- glog -------------------------------------------------------------------------------------
find_package(glog CONFIG QUIET)
if(TARGET glog::glog)
  set(UNIDIFF_GLOG glog::glog)
else()
  find_path(GLOG_INCLUDE_DIR glog/logging.h REQUIRED)
  find_library(GLOG_LIBRARY glog REQUIRED)
  add_library(unidiff_glog INTERFACE)
  target_include_directories(unidiff_glog INTERFACE ${GLOG_INCLUDE_DIR})
  target_link_libraries(unidiff_glog INTERFACE ${GLOG_LIBRARY} ${UNIDIFF_GFLAGS})
  set(UNIDIFF_GLOG unidiff_glog)
endif()

# --- HDF5 as one interface target ---------------------------------------------------------------
add_library(unidiff_hdf5 INTERFACE)
target_include_directories(unidiff_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(unidiff_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
target_compile_definitions(unidiff_hdf5 INTERFACE ${HDF5_DEFINITIONS})

# --- LibTorch as one interface target -----------------------------------------------------------
# TORCH_CXX_FLAGS carries the ABI define; TORCH_LIBRARIES keeps libtorch_cuda linked so CUDA is
# usable where a GPU exists, while the binary still runs on CPU-only machines.
add_library(unidiff_torch INTERFACE)
target_link_libraries(unidiff_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(unidiff_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
separate_arguments(_torch_cxx_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(unidiff_torch INTERFACE ${_torch_cxx_flags})

if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(UNIDIFF_TORCH_HAS_CUDA ON)
else()
  set(UNIDIFF_TORCH_HAS_CUDA OFF)
endif()

# --- our CUDA kernels (keyed RNG) -----------------------------------------------------------------
# Compiled wherever nvcc exists and LibTorch has CUDA, also on machines without a GPU (the CPU
# machines check that the kernels build; the GPU host runs them). UNIDIFF_CUDA_KERNELS=OFF skips.
option(UNIDIFF_CUDA_KERNELS "Compile unidiff's CUDA kernels when nvcc is found" ON)
set(UNIDIFF_WITH_CUDA_KERNELS OFF)
if(UNIDIFF_CUDA_KERNELS AND UNIDIFF_TORCH_HAS_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    # LibTorch's config sets CMAKE_CUDA_ARCHITECTURES to OFF; our kernels take TORCH_CUDA_ARCH_LIST
    # ("9.0" -> 90) as a target property instead.
    string(REPLACE "." "" UNIDIFF_CUDA_ARCHS "${TORCH_CUDA_ARCH_LIST}")
    string(REPLACE "+PTX" "" UNIDIFF_CUDA_ARCHS "${UNIDIFF_CUDA_ARCHS}")
    string(REPLACE " " ";" UNIDIFF_CUDA_ARCHS "${UNIDIFF_CUDA_ARCHS}")
    if(NOT UNIDIFF_CUDA_ARCHS)
      set(UNIDIFF_CUDA_ARCHS 90)
    endif()
    set(UNIDIFF_WITH_CUDA_KERNELS ON)
  endif()
endif()
message(STATUS "unidiff: CUDA kernels ${UNIDIFF_WITH_CUDA_KERNELS} (architectures ${UNIDIFF_CUDA_ARCHS})")
message(STATUS "unidiff: LibTorch ${Torch_VERSION} from ${Torch_DIR}; CUDA in LibTorch: ${UNIDIFF_TORCH_HAS_CUDA}")
