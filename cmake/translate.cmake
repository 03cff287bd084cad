# Translation (issue 6): the sentencepiece shim.
#
# Debian's libsentencepiece.so.0 embeds and exports protobuf-lite 3.14 symbols; linked into a
# process that has libtorch (libprotobuf.so.32, 3.21) its references bind to the wrong protobuf
# and the process aborts at static initialisation. So sentencepiece is linked only into this
# small shared library with a plain C API (src/spm_shim/mmsearch_spm.cpp), which
# src/translate_spm.cpp loads at run time with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
find_library(SENTENCEPIECE_LIBRARY sentencepiece REQUIRED)
find_path(SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h REQUIRED)

add_library(mmsearch_spm SHARED ${PROJECT_SOURCE_DIR}/src/spm_shim/mmsearch_spm.cpp)
target_include_directories(mmsearch_spm PRIVATE ${SENTENCEPIECE_INCLUDE_DIR})
target_link_libraries(mmsearch_spm PRIVATE ${SENTENCEPIECE_LIBRARY})
set_target_properties(mmsearch_spm PROPERTIES
  CXX_VISIBILITY_PRESET hidden
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})   # beside build/mmsearch
target_compile_options(mmsearch_spm PRIVATE -Wall -Wextra)

# The core library finds the shim beside the executable, in ../lib/mmsearch, in the build tree
# or in the install prefix (or at $MMSEARCH_SPM_SHIM). Only translate_spm.cpp needs the paths.
add_dependencies(mmsearch_core mmsearch_spm)
target_link_libraries(mmsearch_core PRIVATE ${CMAKE_DL_LIBS})
set_property(SOURCE ${PROJECT_SOURCE_DIR}/src/translate_spm.cpp APPEND PROPERTY COMPILE_DEFINITIONS
  MMSEARCH_SPM_SHIM_BUILD_PATH="$<TARGET_FILE:mmsearch_spm>"
  MMSEARCH_SPM_SHIM_INSTALL_PATH="${CMAKE_INSTALL_PREFIX}/lib/mmsearch/libmmsearch_spm.so")
install(TARGETS mmsearch_spm LIBRARY DESTINATION lib/mmsearch)
