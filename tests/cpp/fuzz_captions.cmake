# libFuzzer target for the captions readers (tests/fuzz/fuzz_captions.cpp): captions.csv / .tsv
# (libcsv), captions.jsonl and sidecars. Only with -DMMSEARCH_FUZZ=ON and clang. It compiles
# the readers and the two sources they need itself (no libtorch). Run for example:
#   build/tests/fuzz_captions -max_total_time=120 -max_len=4096 corpus_dir
if(MMSEARCH_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MMSEARCH_FUZZ needs clang (e.g. CXX=clang++-14), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_executable(fuzz_captions
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_captions.cpp
    ${PROJECT_SOURCE_DIR}/src/captions.cpp
    ${PROJECT_SOURCE_DIR}/src/paths.cpp
    ${PROJECT_SOURCE_DIR}/src/text_unicode.cpp)
  target_include_directories(fuzz_captions PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${LIBCSV_INCLUDE_DIR})
  target_compile_options(fuzz_captions PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_captions PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_captions PRIVATE nlohmann_json::nlohmann_json PkgConfig::ICU
    ${LIBCSV_LIBRARY})
endif()
