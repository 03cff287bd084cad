# Pillow references for tests/cpp/test_image.cpp, made at build time by the system Python's
# Pillow (Debian python3-pil 9.4.0, the version the LAVIS goldens were made with), so the C++
# decoder and resize are compared with what LAVIS's own loader produces. Generated into the
# build tree (about 170 MB of .npy), never committed. Generating at build time rather than as
# a CTest fixture keeps the per-test processes of gtest_discover_tests from racing on it.
set(MMSEARCH_PIL_REFS_DIR ${CMAKE_CURRENT_BINARY_DIR}/tmp/pil_refs)
set(MMSEARCH_PIL_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Pillow 9.4 for test references")
execute_process(COMMAND ${MMSEARCH_PIL_PYTHON} -c "import PIL, numpy; print(PIL.__version__)"
  OUTPUT_VARIABLE MMSEARCH_PIL_VERSION OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE MMSEARCH_PIL_RESULT ERROR_QUIET)
if(TARGET test_image AND MMSEARCH_PIL_RESULT EQUAL 0 AND EXISTS "${MMSEARCH_SHARED_DIR}/data")
  if(NOT MMSEARCH_PIL_VERSION STREQUAL "9.4.0")
    message(WARNING "test_image references: Pillow ${MMSEARCH_PIL_VERSION}, the goldens used 9.4.0")
  endif()
  add_custom_command(
    OUTPUT ${MMSEARCH_PIL_REFS_DIR}/DONE
    COMMAND ${MMSEARCH_PIL_PYTHON} ${PROJECT_SOURCE_DIR}/tests/python/make_pil_references.py
            ${MMSEARCH_SHARED_DIR} ${MMSEARCH_PIL_REFS_DIR}
    DEPENDS ${PROJECT_SOURCE_DIR}/tests/python/make_pil_references.py
    COMMENT "Generating Pillow references for test_image"
    VERBATIM)
  add_custom_target(image_pil_references DEPENDS ${MMSEARCH_PIL_REFS_DIR}/DONE)
  add_dependencies(test_image image_pil_references)
elseif(TARGET test_image AND NOT EXISTS "${MMSEARCH_SHARED_DIR}/data")
  # No references without the shared images: the tests that compare with them skip.
elseif(TARGET test_image)
  message(WARNING "test_image: no Pillow/numpy in ${MMSEARCH_PIL_PYTHON}; the reference tests "
                  "will fail (apt-get install python3-pil python3-numpy)")
endif()

# The decoders' libFuzzer target (tests/fuzz/fuzz_image_decode.cpp) is wired in fuzz.cmake.
