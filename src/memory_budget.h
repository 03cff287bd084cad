// A byte budget shared by threads, so that the memory of concurrent work (the decoding workers
// of `index`) stays within a stated bound whatever the number of threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace mmsearch {

class MemoryBudget {
 public:
  explicit MemoryBudget(std::int64_t capacity_bytes) : capacity_(capacity_bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Bytes held until destroyed or reassigned; empty by default.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : budget_(other.budget_), bytes_(other.bytes_) {
      other.budget_ = nullptr;
    }
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        release();
        budget_ = other.budget_;
        bytes_ = other.bytes_;
        other.budget_ = nullptr;
      }
      return *this;
    }
    ~Lease() { release(); }
    std::int64_t bytes() const { return budget_ ? bytes_ : 0; }

   private:
    friend class MemoryBudget;
    Lease(MemoryBudget* budget, std::int64_t bytes) : budget_(budget), bytes_(bytes) {}
    void release() {
      if (budget_) budget_->give_back(bytes_);
      budget_ = nullptr;
    }
    MemoryBudget* budget_ = nullptr;
    std::int64_t bytes_ = 0;
  };

  // Blocks until `bytes` fit beside what others hold. A request larger than the whole budget is
  // granted once nothing else is held, so it runs alone rather than never.
  Lease acquire(std::int64_t bytes) {
    std::unique_lock<std::mutex> lock(mutex_);
    freed_.wait(lock, [&] { return in_use_ == 0 || in_use_ + bytes <= capacity_; });
    in_use_ += bytes;
    if (in_use_ > peak_) peak_ = in_use_;
    return Lease(this, bytes);
  }

  std::int64_t capacity() const { return capacity_; }
  std::int64_t peak() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }

 private:
  void give_back(std::int64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= bytes;
    }
    freed_.notify_all();
  }

  const std::int64_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::int64_t in_use_ = 0;
  std::int64_t peak_ = 0;
};

}  // namespace mmsearch
