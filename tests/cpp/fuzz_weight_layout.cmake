# libFuzzer target for the bundle weight-file parser (tests/fuzz/fuzz_weight_layout.cpp). Only
# with -DMMSEARCH_FUZZ=ON and clang; it compiles the parser on its own (no libtorch).
#   build/tests/fuzz_weight_layout -max_total_time=120 corpus_dir
if(MMSEARCH_FUZZ)
  add_executable(fuzz_weight_layout
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_weight_layout.cpp
    ${PROJECT_SOURCE_DIR}/src/weight_layout.cpp)
  target_include_directories(fuzz_weight_layout PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(fuzz_weight_layout PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_weight_layout PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_weight_layout PRIVATE nlohmann_json::nlohmann_json)
endif()
