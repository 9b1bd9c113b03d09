#include "common/config_template.h"

#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"

namespace psforge {

extern const char kConfigDoc[];

namespace {

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> cells;
  std::string cell;
  bool code = false;
  for (std::size_t i = 1; i < row.size(); ++i) {  // past the leading '|'
    if (row[i] == '`') code = !code;
    if (row[i] == '|' && !code) {
      cells.push_back(Trim(cell));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return cells;
}

std::string Yaml(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>().empty() ? "\"\"" : nlohmann::json(v).dump();
  if (v.is_array()) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + Yaml(v[i]);
    return s + "]";
  }
  return v.dump();
}

// The reference's text with its markdown code marks dropped.
std::string Plain(std::string s) {
  std::string out;
  for (char c : s)
    if (c != '`') out += c;
  return out;
}

}  // namespace

std::string ConfigTemplate() {
  const nlohmann::json defaults = ConfigToJson(JobConfig{});
  std::ostringstream out;
  out << "# A psforge job config: every field at its default, with its line from the\n"
         "# reference (configs/README.md). Delete what you do not change; `data` needs\n"
         "# files of yours (or Debian's dataset-fashion-mnist, as configs/ uses).\n";
  std::istringstream doc(kConfigDoc);
  std::string line, section;
  bool in_fields = false;
  while (std::getline(doc, line)) {
    if (line.rfind("## ", 0) == 0) {
      section = Trim(line.substr(3));
      in_fields = false;
      continue;
    }
    if (line.rfind("| field |", 0) == 0) {
      in_fields = defaults.contains(section);
      if (in_fields) out << "\n" << section << ":\n";
      continue;
    }
    if (!in_fields || line.rfind("|---", 0) == 0) continue;
    if (line.empty() || line[0] != '|') {
      in_fields = false;
      continue;
    }
    const auto cells = Cells(line);
    if (cells.size() < 4) continue;
    out << "  # " << Plain(cells[3]) << " (" << Plain(cells[2]) << ")\n";
    std::istringstream names(cells[0]);
    std::string name;
    while (std::getline(names, name, ',')) {
      name = Trim(name);
      const nlohmann::json& s = defaults[section];
      if (s.contains(name)) out << "  " << name << ": " << Yaml(s[name]) << "\n";
      else out << "  # " << name << ": " << Plain(cells[1]) << "\n";
    }
  }
  return out.str();
}

}  // namespace psforge
