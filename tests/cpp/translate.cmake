# Marian bundles for tests/cpp/test_translate.cpp, exported at build time into the build tree
# (never committed): a --tiny bundle (own sentencepiece models) and, when the goldens are
# present, two --deterministic-weights bundles (zero and golden final_logits_bias).
if(TARGET test_translate)
  set(MMSEARCH_MARIAN_TEST_BUNDLES ${CMAKE_CURRENT_BINARY_DIR}/tmp/marian)
  set(_marian_export ${PROJECT_SOURCE_DIR}/scripts/mmsearch_models/marian_export.py)
  set(_marian_cmds
    COMMAND /usr/bin/python3 ${_marian_export} --tiny --threads 2 --out ${MMSEARCH_MARIAN_TEST_BUNDLES}/tiny)
  if(EXISTS ${MMSEARCH_SHARED_DIR}/golden/marian/tokenizer/vocab.json)
    list(APPEND _marian_cmds
      COMMAND /usr/bin/python3 ${_marian_export} --deterministic-weights --no-verify --threads 2
              --out ${MMSEARCH_MARIAN_TEST_BUNDLES}/det
      COMMAND /usr/bin/python3 ${_marian_export} --deterministic-weights --golden-bias --no-verify
              --threads 2 --out ${MMSEARCH_MARIAN_TEST_BUNDLES}/det-bias)
  endif()
  add_custom_command(
    OUTPUT ${MMSEARCH_MARIAN_TEST_BUNDLES}/DONE
    ${_marian_cmds}
    COMMAND ${CMAKE_COMMAND} -E touch ${MMSEARCH_MARIAN_TEST_BUNDLES}/DONE
    DEPENDS ${_marian_export} ${PROJECT_SOURCE_DIR}/scripts/mmsearch_models/marian.py
    COMMENT "Exporting Marian test bundles for test_translate"
    VERBATIM)
  add_custom_target(marian_test_bundles DEPENDS ${MMSEARCH_MARIAN_TEST_BUNDLES}/DONE)
  add_dependencies(test_translate marian_test_bundles)
  target_compile_definitions(test_translate PRIVATE
    MMSEARCH_MARIAN_TEST_BUNDLES="${MMSEARCH_MARIAN_TEST_BUNDLES}")
endif()
