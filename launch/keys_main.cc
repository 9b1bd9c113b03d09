// ps-keys: the CURVE keys of a cluster.
//
//   ps-keys --dir DIR NAME [NAME...]
//
// Gives each NAME a key pair in DIR/NAME.key (mode 600; an existing one is
// kept) and writes DIR/cluster.keys: the public key of every DIR/*.key, the
// list a cluster's servers and coordinator let in. One NAME must be
// "coordinator". Run again with more names to add members; a second run
// with the same names changes nothing.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli_flags.h"
#include "common/curve.h"

namespace {

psforge::Status Run(const std::string& dir, const std::vector<std::string>& names) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return psforge::Unavailable("cannot create " + dir + ": " + ec.message());
  for (const auto& name : names) {
    if (name.empty() || name.find_first_of(" \t/#") != std::string::npos)
      return psforge::InvalidArgument("member name '" + name + "' must be non-empty, without spaces, '/' or '#'");
    const std::string path = (fs::path(dir) / (name + ".key")).string();
    if (fs::exists(path)) continue;
    PSF_ASSIGN_OR_RETURN(auto keys, psforge::GenerateCurveKeyPair());
    PSF_RETURN_IF_ERROR(psforge::WriteCurveKeyPair(path, keys, name));
    std::printf("ps-keys: wrote %s\n", path.c_str());
  }
  std::map<std::string, std::string> cluster;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".key") continue;
    PSF_ASSIGN_OR_RETURN(auto keys, psforge::ReadCurveKeyPair(entry.path().string()));
    cluster[entry.path().stem().string()] = keys.public_key;
  }
  if (!cluster.count("coordinator"))
    return psforge::InvalidArgument("no key pair named coordinator in " + dir + ": add the name coordinator");
  std::string text = "# The public keys of the psforge cluster in " + dir + " (ps-keys): NAME KEY\n";
  for (const auto& [name, key] : cluster) text += name + " " + key + "\n";
  const std::string list = (fs::path(dir) / "cluster.keys").string();
  std::string old;
  if (std::ifstream in(list); in) old.assign(std::istreambuf_iterator<char>(in), {});
  if (old != text) {
    std::ofstream out(list, std::ios::trunc);
    out << text;
    if (!out.flush()) return psforge::Unavailable("cannot write " + list);
    std::printf("ps-keys: wrote %s (%zu members)\n", list.c_str(), cluster.size());
  }
  return psforge::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-keys: key pairs and the cluster key list for CURVE"};
  std::string dir;
  std::vector<std::string> names;
  app.add_option("--dir", dir, "where the keys go")->required();
  app.add_option("names", names, "members to give a key pair (one must be coordinator)")->required();
  PSF_PARSE_FLAGS(app, argc, argv);
  psforge::Status s = Run(dir, names);
  if (!s.ok()) return std::fprintf(stderr, "ps-keys: %s\n", s.message().c_str()), 1;
  return 0;
}
