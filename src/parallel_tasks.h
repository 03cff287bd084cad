// Internal: runs independent tasks on the machine's cores (at most 8 threads), each thread
// taking the next task in turn, so uneven tasks still balance. Shared by the search paths.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mmsearch {

// Runs body(i) for every task i in [0, count); rethrows the first failure once all threads
// have stopped (the others stop taking tasks after it).
template <typename Index, typename Body>
void parallel_tasks(Index count, Body body) {
  const unsigned threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  std::atomic<Index> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    try {
      for (Index i = next++; i < count; i = next++) body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = count;
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads && static_cast<Index>(t) < count; ++t) {
    workers.emplace_back(worker);
  }
  worker();
  for (std::thread& w : workers) w.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace mmsearch
