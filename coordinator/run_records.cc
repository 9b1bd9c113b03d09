#include "coordinator/run_records.h"

#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>

#include <nlohmann/json.hpp>

extern char** environ;

namespace psforge {

RunRecords::RunRecords(std::string dir, std::string metric_name)
    : dir_(std::move(dir)), metric_name_(std::move(metric_name)) {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    error_ = "cannot create run directory " + dir_ + ": " + ec.message();
    dir_.clear();
    return;
  }
  metrics_.open(metrics_path(), std::ios::app);
  if (!metrics_) {
    error_ = "cannot write " + metrics_path();
    dir_.clear();
  }
}

void RunRecords::Progress(double time_s, int64_t step, int64_t epoch, double loss,
                          double samples_per_s, int64_t samples) {
  if (dir_.empty()) return;
  loss_.emplace_back(step, loss);
  metrics_ << nlohmann::json{{"time_s", time_s}, {"step", step}, {"epoch", epoch}, {"loss", loss},
                             {"samples_per_s", samples_per_s}, {"samples", samples}}
                  .dump()
           << "\n";
  metrics_.flush();
}

void RunRecords::Evaluation(const EvaluationRecord& e) {
  if (dir_.empty()) return;
  metric_.emplace_back(e.step, e.metric);
  metrics_ << nlohmann::json{{"time_s", e.time_s}, {"step", e.step}, {"epoch", e.epoch},
                             {metric_name_, e.metric}, {"final", e.final}}
                  .dump()
           << "\n";
  metrics_.flush();
}

std::string RunRecords::Plot() {
  if (dir_.empty()) return "";
  const std::string data = dir_ + "/curves.dat", script = dir_ + "/curves.gp", png = dir_ + "/curves.png";
  {
    std::ofstream out(data);
    out << "# step loss\n";
    for (auto [s, l] : loss_) out << s << " " << l << "\n";
    out << "\n\n# step " << metric_name_ << "\n";
    for (auto [s, m] : metric_) out << s << " " << m << "\n";
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1000,420 noenhanced\n"
       << "set output '" << png << "'\n"
       << "set multiplot layout 1,2\n"
       << "set xlabel 'step'\nset grid\n"
       << "set title 'training loss'\nplot '" << data << "' index 0 using 1:2 with lines notitle\n"
       << "set title '" << metric_name_ << "'\nplot '" << data
       << "' index 1 using 1:2 with linespoints pt 7 notitle\n"
       << "unset multiplot\n";
    if (!out || !gp) return "plot not drawn: cannot write " + data;
  }
  if (loss_.empty() || metric_.empty()) return "plot not drawn: no curves recorded";
  pid_t pid;
  const char* argv[] = {"gnuplot", script.c_str(), nullptr};
  if (posix_spawnp(&pid, "gnuplot", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    return "plot not drawn: gnuplot not found (apt install gnuplot-nox); data in " + data;
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "plot not drawn: gnuplot failed on " + script;
  return "plot: " + png;
}

}  // namespace psforge
