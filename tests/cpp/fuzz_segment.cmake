# libFuzzer target for the vector segment header parser (tests/fuzz/fuzz_segment.cpp). Only with
# -DMMSEARCH_FUZZ=ON and clang; it compiles the parser's sources on their own (no libtorch).
#   build/tests/fuzz_segment -max_total_time=120 corpus_dir
if(MMSEARCH_FUZZ)
  add_executable(fuzz_segment
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_segment.cpp
    ${PROJECT_SOURCE_DIR}/src/segment_header.cpp
    ${PROJECT_SOURCE_DIR}/src/rules.cpp)
  target_include_directories(fuzz_segment PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(fuzz_segment PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_segment PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_segment PRIVATE PkgConfig::XXHASH nlohmann_json::nlohmann_json)
endif()
