#include "common/init_source.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/run_dir.h"

extern char** environ;

namespace psforge {
namespace {

bool IsConfigFile(const std::filesystem::path& p) { return p.extension() == ".yaml" || p.extension() == ".yml"; }

// Runs `argv` with stdout and stderr into `log`; its exit status, or -1.
int Run(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Whether init_from names a job, a run or its checkpoints (not an .npz).
bool InitFromNamesARun(const std::string& init_from) {
  if (init_from.empty()) return false;
  std::error_code ec;
  return std::filesystem::is_directory(init_from, ec) || IsConfigFile(init_from);
}

}  // namespace

Status ResolveInitFrom(const char* program, JobConfig* config, const std::string& out_dir) {
  const std::string source = config->model.init_from;
  if (!InitFromNamesARun(source)) return Status::Ok();
  std::error_code ec;
  std::filesystem::path run;
  if (IsConfigFile(source)) {
    // The job's newest run, a finished one first (as ps-export finds it).
    run = NewestRun(kRunsFolder, source, /*finished=*/true);
    if (run.empty()) run = NewestRun(kRunsFolder, source, /*finished=*/false);
    if (run.empty())
      return NotFound("model.init_from " + source + ": no run of it under " +
                      (std::filesystem::current_path(ec) / kRunsFolder).string() +
                      "/ (train it first, or name a run directory or an .npz)");
  } else {
    // A run directory, or its checkpoints/ folder.
    run = std::filesystem::path(source).lexically_normal();
    if (run.filename().empty()) run = run.parent_path();
    if (RunRecordConfig(run.string()).empty() && run.filename() == "checkpoints") run = run.parent_path();
    if (RunRecordConfig(run.string()).empty())
      return InvalidArgument("model.init_from " + source +
                             ": a folder, but neither a run directory (with launch.json) nor its checkpoints/ "
                             "folder; name the job's config instead");
  }
  // The run's model is its config with the overrides it was started with.
  std::vector<std::string> args{"--config", RunRecordConfig(run.string()), "--run-dir", run.string()};
  for (const std::string& set : RunRecordSets(run.string())) args.insert(args.end(), {"--set", set});
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return Internal(std::string("cannot find this program's path: ") + std::strerror(errno));
  self[n] = '\0';
  const std::string exporter = (std::filesystem::path(self).parent_path() / "ps-export").string();
  if (access(exporter.c_str(), X_OK) != 0)
    return NotFound("model.init_from " + source + " names a run; reading its checkpoints needs " + exporter +
                    ", which is not there (build it, or give an .npz from ps-export)");
  std::string out = out_dir.empty() ? (std::filesystem::temp_directory_path() /
                                       ("psforge-init-" + std::to_string(getpid()) + ".npz")).string()
                                    : std::filesystem::absolute(std::filesystem::path(out_dir) / "init_from.npz").string();
  const std::string log = out + ".log";
  args.insert(args.begin(), exporter);
  args.insert(args.end(), {"--out", out});
  const int code = Run(args, log);
  std::ifstream in(log);
  std::stringstream said;
  said << in.rdbuf();
  std::filesystem::remove(log, ec);
  if (code != 0) {
    std::string why = said.str();
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return FailedPrecondition("model.init_from " + source + ": no weights to start from: " +
                              (why.empty() ? "ps-export failed" : why));
  }
  std::fprintf(stderr, "%s: model.init_from %s: its newest committed checkpoint, as %s\n", program, source.c_str(),
               out.c_str());
  config->model.init_from = out;
  return Status::Ok();
}

}  // namespace psforge
