// Reading integers from JSON that a user or a damaged file wrote. nlohmann's get<int>() of
// 1e300 or of 2^40 converts out of range (undefined behaviour for a double, found by
// fuzz_manifest), so every integer field of a manifest is checked with this first.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace mmsearch {

// Whether `value` is a JSON integer (not 3.0, not 1e300) that T holds.
template <typename T>
bool is_json_integer_of(const nlohmann::json& value) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (!value.is_number_integer()) return false;
  if (value.is_number_unsigned()) {
    return value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
  }
  const std::int64_t v = value.get<std::int64_t>();
  if constexpr (std::is_signed_v<T>) {
    return v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max();
  } else {
    return v >= 0 && static_cast<std::uint64_t>(v) <= std::numeric_limits<T>::max();
  }
}

// Whether get<T>() of `value` is safe to try: for an integer type, only a JSON integer that T
// holds; any other T is left to nlohmann's own type checks.
template <typename T>
bool json_number_fits(const nlohmann::json& value) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return is_json_integer_of<T>(value);
  } else {
    return true;
  }
}

}  // namespace mmsearch
