// Stratified, seeded samples (see sample.h for the rule).
#include "mmsearch/sample.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "mmsearch/error.h"
#include "mmsearch/hash.h"

namespace mmsearch {

std::vector<std::size_t> stratified_sample(const std::vector<std::string>& categories,
                                           const std::vector<std::string>& keys, std::size_t n,
                                           std::uint64_t seed) {
  if (categories.size() != keys.size()) {
    throw Error(ErrorKind::kUsage, "stratified_sample: " + std::to_string(categories.size()) +
                                       " categories but " + std::to_string(keys.size()) + " keys");
  }
  const std::size_t total = categories.size();
  std::vector<std::size_t> kept(total);
  std::iota(kept.begin(), kept.end(), 0);
  if (n >= total) return kept;

  // Members of each category, categories in name order (std::map) so ties are deterministic.
  std::map<std::string, std::vector<std::size_t>> strata;
  for (std::size_t i = 0; i < total; ++i) strata[categories[i]].push_back(i);

  // Largest remainder, in exact integer arithmetic: quota = n * size / total.
  struct Quota {
    std::vector<std::size_t>* members;
    std::size_t seats;
    std::uint64_t remainder;  // of n * size / total, in units of 1 / total
  };
  std::vector<Quota> quotas;
  std::size_t given = 0;
  for (auto& [category, members] : strata) {
    const std::uint64_t share = static_cast<std::uint64_t>(n) * members.size();
    quotas.push_back({&members, static_cast<std::size_t>(share / total), share % total});
    given += quotas.back().seats;
  }
  std::vector<std::size_t> by_remainder(quotas.size());
  std::iota(by_remainder.begin(), by_remainder.end(), 0);
  std::stable_sort(by_remainder.begin(), by_remainder.end(), [&](std::size_t a, std::size_t b) {
    return quotas[a].remainder > quotas[b].remainder;
  });
  for (std::size_t r = 0; given < n; ++r, ++given) ++quotas[by_remainder[r]].seats;

  kept.clear();
  std::vector<std::pair<std::uint64_t, std::size_t>> ranked;
  for (const Quota& quota : quotas) {
    ranked.clear();
    for (std::size_t i : *quota.members) {
      ranked.emplace_back(xxh64(keys[i].data(), keys[i].size(), seed), i);
    }
    std::partial_sort(ranked.begin(), ranked.begin() + quota.seats, ranked.end());
    for (std::size_t s = 0; s < quota.seats; ++s) kept.push_back(ranked[s].second);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace mmsearch
