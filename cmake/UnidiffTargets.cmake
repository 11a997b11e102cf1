# Helpers that every target of ours goes through: warnings, the shared precompiled header, and
# labelled tests. Flags are set per target, never by editing CMAKE_CXX_FLAGS.

add_library(unidiff_options INTERFACE)
target_compile_options(unidiff_options INTERFACE -Wall -Wextra -Wno-unused-parameter)
if(UNIDIFF_WERROR)
  target_compile_options(unidiff_options INTERFACE -Werror)
endif()
if(UNIDIFF_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "UNIDIFF_FUZZ needs clang (libFuzzer): configure with CXX=clang++ (scripts/fuzz.sh does)")
  endif()
  # Coverage for libFuzzer in every unit; ASan and UBSan, UB fatal. vptr is off: LibTorch's classes
  # come from an uninstrumented library without the type information UBSan's vptr check needs.
  target_compile_options(unidiff_options INTERFACE -fsanitize=fuzzer-no-link,address,undefined
    -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(unidiff_options INTERFACE -fsanitize=address,undefined -fno-sanitize=vptr)
elseif(UNIDIFF_SANITIZE)
  target_compile_options(unidiff_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(unidiff_options INTERFACE -fsanitize=address,undefined)
endif()
target_include_directories(unidiff_options INTERFACE ${PROJECT_SOURCE_DIR})
# The torch wheel's libtorch.so exports its own copy of std::filesystem, which crashes when our
# code resolves to it (seen: std::filesystem::remove_all jumping to address 0). Putting libstdc++
# first in the executables' NEEDED list makes the dynamic linker bind those symbols to libstdc++.
target_link_options(unidiff_options INTERFACE
  "LINKER:--push-state,--no-as-needed" -lstdc++ "LINKER:--pop-state")

# One precompiled header for every translation unit that uses LibTorch (about 0.6 GB, built once,
# then 5-6 s per unit instead of 15-19 s). Units that include glog opt out with
# SKIP_PRECOMPILE_HEADERS, because c10 and glog both define LOG and CHECK.
add_library(unidiff_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(unidiff_pch PUBLIC unidiff_options unidiff_torch)
target_precompile_headers(unidiff_pch PRIVATE ${PROJECT_SOURCE_DIR}/cmake/unidiff_pch.h)

# unidiff_library(NAME SOURCES ... DEPS ...): a library target of one folder.
function(unidiff_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_link_libraries(${name} PUBLIC unidiff_options unidiff_torch ${ARG_DEPS})
  target_precompile_headers(${name} REUSE_FROM unidiff_pch)
endfunction()

# unidiff_executable(NAME SOURCES ... DEPS ...)
function(unidiff_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE unidiff_options unidiff_torch ${ARG_DEPS})
  target_precompile_headers(${name} REUSE_FROM unidiff_pch)
endfunction()

# unidiff_test(NAME LABEL label [NP n] [CORES c] [TIMEOUT s] COMMAND ...): a labelled ctest that
# ctest counts as using c cores (PROCESSORS), with as many LibTorch/OpenMP threads: ctest -j N then
# never runs more threads than N cores. Two processes of two spinning OpenMP threads each on two
# cores ran the unit tests seven times slower than alone (424 s instead of 62 s). With NP the command
# runs under mpirun with n ranks of one thread each (c = n; as root, oversubscribed: CI has 2
# cores); otherwise every process of the command runs c threads (OMP_NUM_THREADS=c, which
# `--threads=0` and LibTorch follow; c defaults to 1), and a script that starts k ranks itself
# passes them `-x OMP_NUM_THREADS=1` with c = k.
set(UNIDIFF_MPIRUN ${MPIEXEC_EXECUTABLE} --oversubscribe --bind-to none
    -x OMP_NUM_THREADS=1 --timeout 600)
function(unidiff_test name)
  cmake_parse_arguments(ARG "" "LABEL;NP;CORES;TIMEOUT" "COMMAND" ${ARGN})
  if(ARG_NP)
    set(cmd ${UNIDIFF_MPIRUN} -np ${ARG_NP} ${ARG_COMMAND})
    set(ARG_CORES ${ARG_NP})
    set(threads 1)
  else()
    set(cmd ${ARG_COMMAND})
    if(NOT ARG_CORES)
      set(ARG_CORES 1)
    endif()
    set(threads ${ARG_CORES})
  endif()
  add_test(NAME ${name} COMMAND ${cmd})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABEL}" TIMEOUT ${ARG_TIMEOUT}
    PROCESSORS ${ARG_CORES}
    ENVIRONMENT "OMP_NUM_THREADS=${threads};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
endfunction()
