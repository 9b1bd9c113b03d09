#include "common/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace psforge {
namespace fs = std::filesystem;

namespace {
constexpr const char* kRunRecord = "launch.json";
}  // namespace

std::string DefaultRunDir(const std::string& config_path) {
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  const std::string base = std::string(kRunsFolder) + "/" + fs::path(config_path).stem().string() + "-" + stamp;
  // Two runs started in the same second get two directories.
  std::error_code ec;
  std::string dir = base;
  for (int n = 2; fs::exists(dir, ec); ++n) dir = base + "-" + std::to_string(n);
  return dir;
}

std::string ConfigIdentity(const std::string& config_path) {
  std::error_code ec;
  auto c = fs::weakly_canonical(config_path, ec);
  return ec ? config_path : c.string();
}

Status WriteRunRecord(const std::string& run_dir, const std::string& config_path,
                      const std::vector<std::string>& sets) {
  const std::string path = run_dir + "/" + kRunRecord;
  std::ofstream out(path);
  nlohmann::json record{{"config", ConfigIdentity(config_path)}};
  if (!sets.empty()) record["sets"] = sets;
  out << record.dump() << "\n";
  if (!out) return Unavailable("cannot write " + path);
  return Status::Ok();
}

std::string RunRecordConfig(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / kRunRecord);
  if (!in) return "";
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("config") && j["config"].is_string() ? j["config"].get<std::string>() : "";
}

std::vector<std::string> RunRecordSets(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / kRunRecord);
  if (!in) return {};
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> sets;
  if (j.is_object() && j.contains("sets") && j["sets"].is_array())
    for (const auto& s : j["sets"])
      if (s.is_string()) sets.push_back(s.get<std::string>());
  return sets;
}

std::string NewestRun(const std::string& base, const std::string& config_path, bool finished) {
  const std::string config = ConfigIdentity(config_path);
  std::error_code ec;
  fs::path newest;
  fs::file_time_type newest_time{};
  for (const auto& entry : fs::directory_iterator(base, ec)) {
    std::error_code e;
    if (!entry.is_directory(e) || RunRecordConfig(entry.path().string()) != config) continue;
    if (fs::exists(entry.path() / "summary.json", e) != finished) continue;
    const auto t = fs::last_write_time(entry.path() / kRunRecord, e);
    if (!e && (newest.empty() || t > newest_time)) newest = entry.path(), newest_time = t;
  }
  return newest.string();
}

Result<std::string> ResumeRunDir(const std::string& program, const std::string& resume_dir,
                                 const std::string& run_dir, const std::string& config_path,
                                 bool checkpoint_dir_set) {
  if (!resume_dir.empty() && !run_dir.empty() && ConfigIdentity(resume_dir) != ConfigIdentity(run_dir))
    return InvalidArgument("--resume " + resume_dir + " and --run-dir " + run_dir + " name two run directories; give one");
  std::string dir = resume_dir.empty() ? run_dir : resume_dir;
  if (dir.empty()) {
    dir = NewestRun(kRunsFolder, config_path, /*finished=*/false);
    if (dir.empty() && checkpoint_dir_set) return std::string();  // checkpoint.dir says where
    if (dir.empty())
      return NotFound("--resume: no unfinished run of " + config_path + " under " + kRunsFolder +
                      "/ (a run that finished has a summary.json; `ls " + kRunsFolder +
                      "` lists them). To resume another one: " + program + " --config " + config_path +
                      " --resume RUN_DIR; to start afresh: leave out --resume");
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("--resume " + dir + ": no such run directory");
  if (fs::exists(fs::path(dir) / "summary.json", ec))
    return FailedPrecondition("--resume " + dir + ": that run finished (its summary.json is there): nothing to "
                              "resume; to train again, leave out --resume");
  if (!checkpoint_dir_set && !fs::exists(fs::path(dir) / "checkpoints" / "coordinator", ec))
    return FailedPrecondition("--resume " + dir + ": it holds no checkpoints (no " + dir + "/checkpoints/coordinator)");
  const std::string recorded = RunRecordConfig(dir);
  const std::string config = ConfigIdentity(config_path);
  if (!recorded.empty() && recorded != config)
    return FailedPrecondition("--resume " + dir + ": that run is of " + recorded + ", not of " + config);
  return dir;
}

std::string RunCheckpointDir(const std::string& run_dir) {
  std::error_code ec;
  auto dir = fs::absolute(fs::path(run_dir) / "checkpoints", ec);
  return (ec ? fs::path(run_dir) / "checkpoints" : dir).lexically_normal().string();
}

std::string RunSpillDir(const std::string& run_dir) {
  std::error_code ec;
  auto dir = fs::absolute(fs::path(run_dir) / "spill", ec);
  return (ec ? fs::path(run_dir) / "spill" : dir).lexically_normal().string();
}

Status CheckOutputFile(const std::string& path, const std::string& flag) {
  if (path.empty()) return Status::Ok();
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return InvalidArgument(flag + " " + path + ": is a directory; give a file name");
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::is_directory(parent, ec))
    return InvalidArgument(flag + " " + path + ": the folder " + parent.string() +
                           (fs::exists(parent, ec) ? " is not a directory" : " does not exist"));
  // Tried for real (permissions alone say nothing for root, or on a
  // read-only mount); a file this created is removed again.
  const bool existed = fs::exists(path, ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return InvalidArgument(flag + " " + path + ": cannot write it: " + std::strerror(errno));
  ::close(fd);
  if (!existed) ::unlink(path.c_str());
  return Status::Ok();
}

Status PrepareOutputDir(const std::string& dir, const std::string& flag) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    return InvalidArgument(flag + " " + dir + ": exists and is not a directory");
  fs::create_directories(dir, ec);
  if (ec) return InvalidArgument(flag + " " + dir + ": cannot create it: " + ec.message());
  return CheckOutputFile((fs::path(dir) / ".psforge-write-test").string(), flag);
}

}  // namespace psforge
