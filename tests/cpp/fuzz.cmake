# libFuzzer targets (tests/fuzz/fuzz_*.cpp), their seed corpora (tests/fuzz/corpus/<target>/)
# and the crash inputs found so far (tests/fuzz/regressions/<target>/). docs/FUZZING.md says
# what each covers; scripts/fuzz.sh SECONDS builds and runs them all.
#
# With -DMMSEARCH_FUZZ=ON (clang only) each target is a libFuzzer binary built from the sources
# it names, instrumented with ASan + UBSan, and linked with nothing of the project beyond them
# (no libtorch), e.g.
#   build-fuzz/tests/fuzz_store -max_total_time=120 build-fuzz/corpus-work/fuzz_store
# In every other build (gcc, MMSEARCH_FUZZ off) each target is instead a replay test,
# fuzz_replay_<target>: tests/fuzz/replay_main.cpp calls the target's LLVMFuzzerTestOneInput on
# every file of its corpus and regressions folders, linked with mmsearch_core. So the corpora
# are regression tests in ordinary CI, and a crash input found once stays fixed.

if(MMSEARCH_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MMSEARCH_FUZZ needs clang (e.g. CXX=clang++ CC=clang), not "
                      "${CMAKE_CXX_COMPILER_ID}")
endif()

# mmsearch_add_fuzz_target(NAME
#   SOURCES src...       project sources the fuzz binary compiles (relative to src/)
#   [LIBS lib...]        libraries they need
#   [INCLUDES dir...]    extra include folders (include/ and src/ are always there)
#   [DEFINITIONS d...]   compile definitions, for both the fuzz binary and the replay test
#   [REQUIRES path])     the replay test is only registered when `path` exists
# The harness is tests/fuzz/NAME.cpp.
function(mmsearch_add_fuzz_target name)
  cmake_parse_arguments(PARSE_ARGV 1 FUZZ "" "REQUIRES" "SOURCES;LIBS;INCLUDES;DEFINITIONS")
  set(harness ${PROJECT_SOURCE_DIR}/tests/fuzz/${name}.cpp)
  set(corpus ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  set(regressions ${PROJECT_SOURCE_DIR}/tests/fuzz/regressions/${name})
  if(MMSEARCH_FUZZ)
    list(TRANSFORM FUZZ_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/src/)
    add_executable(${name} ${harness} ${FUZZ_SOURCES})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include
                                               ${PROJECT_SOURCE_DIR}/src ${FUZZ_INCLUDES})
    target_compile_definitions(${name} PRIVATE ${FUZZ_DEFINITIONS})
    target_compile_options(${name} PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined
                                           -fno-sanitize-recover=undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${name} PRIVATE ${FUZZ_LIBS})
  else()
    if(FUZZ_REQUIRES AND NOT EXISTS "${FUZZ_REQUIRES}")
      message(STATUS "fuzz_replay_${name}: skipped, it needs ${FUZZ_REQUIRES}")
      return()
    endif()
    add_executable(${name}_replay ${harness} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cpp)
    target_include_directories(${name}_replay PRIVATE ${PROJECT_SOURCE_DIR}/src ${FUZZ_INCLUDES})
    target_compile_definitions(${name}_replay PRIVATE ${FUZZ_DEFINITIONS})
    target_link_libraries(${name}_replay PRIVATE mmsearch_core ${FUZZ_LIBS})
    add_test(NAME fuzz_replay_${name} COMMAND ${name}_replay ${corpus} ${regressions})
    set_tests_properties(fuzz_replay_${name} PROPERTIES TIMEOUT 120
                         ENVIRONMENT "OMP_NUM_THREADS=1")
  endif()
endfunction()

# The captions readers: captions.csv / .tsv (libcsv), captions.jsonl and sidecars.
mmsearch_add_fuzz_target(fuzz_captions
  SOURCES captions.cpp paths.cpp text_unicode.cpp
  INCLUDES ${LIBCSV_INCLUDE_DIR}
  LIBS nlohmann_json::nlohmann_json PkgConfig::ICU ${LIBCSV_LIBRARY})

# The image decoders (JPEG, PNG, GIF, EXIF, OpenCV for the rest) and the PIL-exact resize.
mmsearch_add_fuzz_target(fuzz_image_decode
  SOURCES image_decode.cpp image_exif.cpp image_gif.cpp image_resize.cpp
  LIBS ${OpenCV_LIBS} PkgConfig::LIBJPEG PkgConfig::LIBPNG GIF::GIF PkgConfig::LIBEXIF)

# The parsers of `mmsearch import`: .npy headers, metadata.jsonl lines and format.json
# (npy.cpp needs only c10's header-only Half).
mmsearch_add_fuzz_target(fuzz_import
  SOURCES npy.cpp vector_format.cpp
  INCLUDES ${TORCH_INCLUDE_DIRS}
  LIBS nlohmann_json::nlohmann_json)

# The bundle manifest (mmsearch.json of a vision-language or translation bundle).
# bundle.cpp reads only libtorch's version header.
mmsearch_add_fuzz_target(fuzz_manifest
  SOURCES bundle.cpp bundle_files.cpp translate_manifest.cpp rules.cpp paths.cpp hash.cpp
  INCLUDES ${TORCH_INCLUDE_DIRS}
  DEFINITIONS MMSEARCH_INSTALL_MODELS_DIR="${CMAKE_INSTALL_PREFIX}/share/mmsearch/models"
              MMSEARCH_SOURCE_MODELS_DIR="${PROJECT_SOURCE_DIR}/models"
  LIBS nlohmann_json::nlohmann_json OpenSSL::Crypto PkgConfig::XXHASH)

# The vector segment header parser.
mmsearch_add_fuzz_target(fuzz_segment
  SOURCES segment_header.cpp rules.cpp
  LIBS PkgConfig::XXHASH nlohmann_json::nlohmann_json)

# The store reader: a mutated SQLite store (and its segment files) opened and queried.
# vector_kernels.cpp needs only c10's header-only Half.
mmsearch_add_fuzz_target(fuzz_store
  SOURCES store.cpp store_ann.cpp store_queries.cpp store_schema.cpp store_search.cpp
          store_segments.cpp store_translations.cpp sqlite_db.cpp segment.cpp
          segment_header.cpp ann_index.cpp search.cpp score_rows.cpp vector_kernels.cpp
          rules.cpp paths.cpp hash.cpp
  INCLUDES ${TORCH_INCLUDE_DIRS}
  LIBS PkgConfig::SQLITE3 PkgConfig::XXHASH faiss OpenMP::OpenMP_CXX OpenSSL::Crypto
       spdlog::spdlog nlohmann_json::nlohmann_json)

# pre_caption and the BLIP WordPiece tokenizer, with the BERT vocabulary of ../shared.
mmsearch_add_fuzz_target(fuzz_tokenizer
  SOURCES text_caption.cpp text_unicode.cpp text_wordpiece.cpp
  DEFINITIONS MMSEARCH_SHARED_DIR="${MMSEARCH_SHARED_DIR}"
  REQUIRES ${MMSEARCH_SHARED_DIR}/data/bert-base-uncased-vocab.txt
  LIBS PkgConfig::ICU)

# The bundle weight-file (weights.bin) parser.
mmsearch_add_fuzz_target(fuzz_weight_layout
  SOURCES weight_layout.cpp
  LIBS nlohmann_json::nlohmann_json)

# The body of `POST /api/query` (mmsearch serve) and its base64 reader.
mmsearch_add_fuzz_target(fuzz_api_query
  SOURCES api_request.cpp rules.cpp text_unicode.cpp
  LIBS nlohmann_json::nlohmann_json PkgConfig::ICU OpenSSL::Crypto)
