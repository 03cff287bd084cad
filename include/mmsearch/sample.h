// Deterministic, seeded, stratified samples of items: how `simmatrix --sample` and
// `eval --sample` keep a large scope's categories in proportion while looking at fewer items.
//
// stratified_sample(categories, keys, n, seed) keeps n of the M items:
// * Proportions: every category (items without one form a category of their own) gets a quota
//   in proportion to its size, by largest remainder: floor(n * size / M) items first, then the
//   items still missing go one each to the categories with the largest remainders of
//   n * size / M (ties to the category that sorts first). Quotas add up to n and each is
//   within one item of the exact proportion; a category of fewer than M / n items may get
//   none.
// * Which items: inside a category, the quota items whose key has the lowest XXH64 under the
//   seed, ties to the lower index. Callers pass the file's path as the key (every caption of a
//   file shares it, the file's first caption winning the tie), so a sample depends neither on
//   the store's row ids nor on load order, the same seed gives the same sample on every run and
//   machine, and the image and caption sides of one matrix sample the same files as far as
//   their category counts allow.
// Returns the kept indices in ascending order, so the items keep their order. n >= M keeps
// every item. Throws Error(kUsage) when categories and keys differ in length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmsearch {

std::vector<std::size_t> stratified_sample(const std::vector<std::string>& categories,
                                           const std::vector<std::string>& keys, std::size_t n,
                                           std::uint64_t seed);

}  // namespace mmsearch
