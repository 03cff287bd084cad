// MemoryBudget: what the decoding workers of `index` hold together stays within the budget,
// a request larger than the budget runs alone instead of never, and leases free on release.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "../../src/memory_budget.h"

using mmsearch::MemoryBudget;

TEST(MemoryBudget, ConcurrentHoldersStayWithinCapacity) {
  MemoryBudget budget(100);
  std::atomic<std::int64_t> held{0}, most{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        MemoryBudget::Lease lease = budget.acquire(30);
        const std::int64_t now = held += 30;
        std::int64_t seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        held -= 30;
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_LE(most.load(), 90);  // three leases of 30 fit in 100, a fourth never
  EXPECT_LE(budget.peak(), 90);
  EXPECT_GE(budget.peak(), 30);
}

TEST(MemoryBudget, OversizedRequestWaitsUntilAloneThenRuns) {
  MemoryBudget budget(100);
  MemoryBudget::Lease small = budget.acquire(10);
  std::atomic<bool> granted{false};
  std::thread big([&] {
    MemoryBudget::Lease lease = budget.acquire(500);
    granted = true;
    EXPECT_EQ(lease.bytes(), 500);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(granted.load()) << "a request above the budget must wait while others hold";
  small = MemoryBudget::Lease();  // released by reassignment
  big.join();
  EXPECT_TRUE(granted.load());
  EXPECT_EQ(budget.peak(), 500);
}

TEST(MemoryBudget, MovedLeaseReleasesOnce) {
  MemoryBudget budget(50);
  {
    MemoryBudget::Lease a = budget.acquire(50);
    MemoryBudget::Lease b = std::move(a);
    EXPECT_EQ(a.bytes(), 0);
    EXPECT_EQ(b.bytes(), 50);
  }
  // Everything was given back exactly once: the whole budget is free again, twice over.
  MemoryBudget::Lease c = budget.acquire(50);
  c = MemoryBudget::Lease();
  MemoryBudget::Lease d = budget.acquire(50);
  EXPECT_EQ(d.bytes(), 50);
}
