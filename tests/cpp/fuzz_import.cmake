# libFuzzer target for the vector import parsers (tests/fuzz/fuzz_import.cpp): .npy headers,
# metadata.jsonl lines and format.json. Only with -DMMSEARCH_FUZZ=ON and clang. It compiles the
# two parser sources itself (npy.cpp needs only c10's header-only Half), so nothing else is
# instrumented. Run for example:
#   build/tests/fuzz_import -max_total_time=120 -max_len=4096 corpus_dir
if(MMSEARCH_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MMSEARCH_FUZZ needs clang (e.g. CXX=clang++-14), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_executable(fuzz_import
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_import.cpp
    ${PROJECT_SOURCE_DIR}/src/npy.cpp
    ${PROJECT_SOURCE_DIR}/src/vector_format.cpp)
  target_include_directories(fuzz_import PRIVATE ${PROJECT_SOURCE_DIR}/include ${TORCH_INCLUDE_DIRS})
  target_compile_options(fuzz_import PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_import PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_import PRIVATE nlohmann_json::nlohmann_json)
endif()
