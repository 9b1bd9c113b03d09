#include "common/curve.h"

#include <sys/stat.h>
#include <zmq.h>

#include <cstdint>
#include <fstream>
#include <sstream>

namespace psforge {
namespace {

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

bool IsCurveKey(const std::string& key) {
  if (key.size() != 40) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

Result<CurveKeyPair> GenerateCurveKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0)
    return Unavailable(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  return CurveKeyPair{pub, sec};
}

Result<CurveKeyPair> ReadCurveKeyPair(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return NotFound("key pair file " + path + " does not exist");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    return FailedPrecondition("key pair file " + path + " holds a secret key but is readable by others; chmod 600 " + path);
  std::ifstream in(path);
  if (!in) return NotFound("cannot read key pair file " + path);
  CurveKeyPair keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;  // whole-line comments only: '#' is a Z85 character
    const auto eq = line.find('=');
    const std::string field = eq == std::string::npos ? line : Trim(line.substr(0, eq));
    const std::string value = eq == std::string::npos ? "" : Trim(line.substr(eq + 1));
    std::string* slot = field == "public-key" ? &keys.public_key : field == "secret-key" ? &keys.secret_key : nullptr;
    if (!slot)
      return InvalidArgument(path + ":" + std::to_string(number) + ": '" + field +
                             "' is not public-key or secret-key");
    if (!IsCurveKey(value))
      return InvalidArgument(path + ":" + std::to_string(number) + ": " + field +
                             " is not a CURVE key (40 characters of Z85)");
    *slot = value;
  }
  if (keys.public_key.empty() || keys.secret_key.empty())
    return InvalidArgument("key pair file " + path + " lacks its " +
                           (keys.public_key.empty() ? "public-key" : "secret-key") + " line");
  char derived[41];
  if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0 || keys.public_key != derived)
    return InvalidArgument("key pair file " + path + ": public-key is not the secret key's");
  return keys;
}

Status WriteCurveKeyPair(const std::string& path, const CurveKeyPair& keys, const std::string& name) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Unavailable("cannot write " + path);
  ::chmod(path.c_str(), 0600);  // before the secret goes in
  out << "# psforge CURVE key pair of " << name << ": keep it secret\n"
      << "public-key = " << keys.public_key << "\nsecret-key = " << keys.secret_key << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + path);
  return Status::Ok();
}

Result<std::map<std::string, std::string>> ReadClusterKeys(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read the cluster key file " + path);
  std::map<std::string, std::string> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;  // whole-line comments only: '#' is a Z85 character
    std::istringstream fields(line);
    std::string name, key, extra;
    fields >> name >> key >> extra;
    const std::string where = path + ":" + std::to_string(number) + ": ";
    if (key.empty() || !extra.empty()) return InvalidArgument(where + "expected 'NAME KEY'");
    if (!IsCurveKey(key)) return InvalidArgument(where + "the key of " + name + " is not a CURVE public key (40 characters of Z85)");
    if (!keys.emplace(name, key).second) return InvalidArgument(where + name + " is listed twice");
  }
  if (keys.empty()) return InvalidArgument("the cluster key file " + path + " lists no keys");
  return keys;
}

Result<CurveOptions> LoadCurveOptions(const std::string& key_file, const std::string& cluster_file) {
  CurveOptions options;
  PSF_ASSIGN_OR_RETURN(options.own, ReadCurveKeyPair(key_file));
  PSF_ASSIGN_OR_RETURN(options.cluster, ReadClusterKeys(cluster_file));
  options.cluster_file = cluster_file;
  if (!options.cluster.count("coordinator"))
    return InvalidArgument("the cluster key file " + cluster_file + " has no entry named coordinator");
  bool listed = false;
  for (const auto& [name, key] : options.cluster) listed = listed || key == options.own.public_key;
  if (!listed)
    return FailedPrecondition("the public key of " + key_file + " is not in the cluster key file " + cluster_file +
                            ": the cluster would refuse this process");
  return options;
}

bool IsLoopbackEndpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  const std::string rest = endpoint.substr(6);
  const auto colon = rest.rfind(':');
  const std::string host = rest.substr(0, colon == std::string::npos ? rest.size() : colon);
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]" || host == "::1";
}

Status CheckPlaintextBind(const std::string& who, const std::string& endpoint, bool curve, bool plaintext_allowed) {
  if (curve || plaintext_allowed || IsLoopbackEndpoint(endpoint)) return Status::Ok();
  return FailedPrecondition(who + " would listen on " + endpoint +
                            ", beyond this machine, without CURVE: give it the cluster's keys (security.key and "
                            "security.cluster_keys in the config, --key and --cluster-keys for servers and workers; "
                            "ps-keys makes them), or set security.plaintext: true to let the job's traffic, its "
                            "weights included, cross the network unencrypted and unauthenticated");
}

}  // namespace psforge
