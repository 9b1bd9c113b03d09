// The benchmarks' one way to report repeated runs: "min / median / max".
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace psforge {

// `format` is a printf conversion for one value, e.g. "%.2f".
inline std::string MinMedMax(std::vector<double> v, const char* format) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  const std::string f = std::string(format) + " / " + format + " / " + format;
  char buf[192];
  std::snprintf(buf, sizeof buf, f.c_str(), v.front(), v[v.size() / 2], v.back());
  return buf;
}

}  // namespace psforge
