# Benchmarks: built with the tests, never run by CTest (they print numbers, assert nothing).
foreach(bench bench_search bench_index bench_encoder bench_gemm bench_store_search bench_simmatrix)
  add_executable(${bench} ${PROJECT_SOURCE_DIR}/tests/bench/${bench}.cpp)
  target_link_libraries(${bench} PRIVATE mmsearch_core)
endforeach()
