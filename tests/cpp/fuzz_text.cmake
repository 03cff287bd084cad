# libFuzzer target for pre_caption and the WordPiece tokenizer (tests/fuzz/fuzz_tokenizer.cpp).
# Only with -DMMSEARCH_FUZZ=ON and clang. It compiles the text sources itself, so the fuzzer
# does not need libtorch or the rest of mmsearch_core instrumented. Run for example:
#   build/tests/fuzz_tokenizer -max_total_time=120 -max_len=4096 corpus_dir
if(MMSEARCH_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MMSEARCH_FUZZ needs clang (e.g. CXX=clang++-14), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_executable(fuzz_tokenizer
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tokenizer.cpp
    ${PROJECT_SOURCE_DIR}/src/text_caption.cpp
    ${PROJECT_SOURCE_DIR}/src/text_unicode.cpp
    ${PROJECT_SOURCE_DIR}/src/text_wordpiece.cpp)
  target_include_directories(fuzz_tokenizer PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_definitions(fuzz_tokenizer PRIVATE MMSEARCH_SHARED_DIR="${MMSEARCH_SHARED_DIR}")
  target_compile_options(fuzz_tokenizer PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_tokenizer PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_tokenizer PRIVATE PkgConfig::ICU)
endif()
