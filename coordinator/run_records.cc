#include "coordinator/run_records.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

extern char** environ;

namespace psforge {

RunRecords::RunRecords(std::string dir, std::string metric_name, std::string second_name)
    : dir_(std::move(dir)), metric_name_(std::move(metric_name)), second_name_(std::move(second_name)) {
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

void RunRecords::LossPoint(int64_t step, double loss) {
  if (dir_.empty() || (!loss_.empty() && loss_.back().first >= step)) return;
  loss_.emplace_back(step, loss);
}

void RunRecords::Progress(double time_s, int64_t step, int64_t epoch, double loss,
                          double samples_per_s, int64_t samples) {
  if (dir_.empty()) return;
  LossPoint(step, loss);
  metrics_ << nlohmann::json{{"time_s", time_s}, {"step", step}, {"epoch", epoch}, {"loss", loss},
                             {"samples_per_s", samples_per_s}, {"samples", samples}}
                  .dump()
           << "\n";
  metrics_.flush();
}

void RunRecords::Evaluation(const EvaluationRecord& e) {
  if (dir_.empty()) return;
  metric_.emplace_back(e.step, e.metric);
  if (!e.final) epoch_ends_.emplace_back(e.step, e.epoch);
  nlohmann::json j{{"time_s", e.time_s}, {"step", e.step}, {"epoch", e.epoch}, {metric_name_, e.metric}, {"final", e.final}};
  if (!second_name_.empty()) j[second_name_] = e.test_logloss;
  metrics_ << j.dump() << "\n";
  metrics_.flush();
}

int64_t RoundTicSpacing(int64_t span, int most) {
  int64_t spacing = 1;
  for (int64_t scale = 1;; scale *= 10)
    for (int64_t m : {1, 2, 5})
      if (spacing = m * scale; span / spacing <= most) return spacing;
}

namespace {

// A gnuplot single-quoted string.
std::string Quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string RunRecords::Plot() {
  if (dir_.empty()) return "";
  const std::string data = dir_ + "/curves.dat", script = dir_ + "/curves.gp", png = dir_ + "/curves.png",
                    log = dir_ + "/curves.log", metric_data = dir_ + "/curves_metric.dat";
  if (loss_.empty() && metric_.empty()) return "plot not drawn: no curves recorded";
  int64_t last = 1;
  for (auto [s, l] : loss_) last = std::max(last, s);
  for (auto [s, m] : metric_) last = std::max(last, s);
  {
    std::ofstream out(data), metric_out(metric_data);
    out << "# step loss\n";
    for (auto [s, l] : loss_) out << s << " " << l << "\n";
    metric_out << "# step " << metric_name_ << "\n";
    for (auto [s, m] : metric_) metric_out << s << " " << m << "\n";
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1100,460 noenhanced\n"
       << "set output " << Quoted(png) << "\n"
       << "set multiplot layout 1,2 title " << Quoted(title_.empty() ? dir_ : title_) << "\n"
       << "set grid\nset xlabel 'step'\nset xrange [0:" << last << "]\n"
       << "set xtics " << RoundTicSpacing(last, 6) << "\nset format x '%.0f'\n";
    // The epochs' ends, dashed, on both panels.
    for (std::size_t i = 0; i < epoch_ends_.size(); ++i)
      gp << "set arrow " << i + 1 << " from " << epoch_ends_[i].first << ", graph 0 to " << epoch_ends_[i].first
         << ", graph 1 nohead dashtype 2 linecolor rgb '#999999'\n";
    if (!epoch_ends_.empty())
      gp << "set label 1 'dashed: end of an epoch' at graph 0.02, graph 0.04 font ',9' textcolor rgb '#777777'\n";
    auto panel = [&](const char* title, const char* ylabel, const std::string& file,
                     const std::vector<std::pair<int64_t, double>>& points, const char* style) {
      gp << "set title '" << title << "'\nset ylabel '" << ylabel << "'\n";
      if (points.empty()) {  // nothing to draw: an empty frame says so instead of a warning
        gp << "set yrange [0:1]\nset label 2 'not recorded' at graph 0.5, graph 0.5 center\n"
           << "plot 2 notitle\nunset label 2\n";  // a line above the frame: nothing drawn
      } else {
        double lo = points[0].second, hi = lo;
        for (auto [s, v] : points) lo = std::min(lo, v), hi = std::max(hi, v);
        if (hi - lo < 1e-12) {  // one value: a range around it (gnuplot warns on an empty one)
          const double pad = std::max(0.05 * std::abs(lo), 0.01);
          gp << "set yrange [" << lo - pad << ":" << hi + pad << "]\n";
        } else {
          gp << "set autoscale y\n";
        }
        gp << "plot " << Quoted(file) << " using 1:2 with " << (points.size() == 1 ? "points pt 7 ps 1.5" : style)
           << " notitle\n";
      }
    };
    panel("training loss", "loss (mean over the workers)", data, loss_, "lines lw 1.5");
    panel(metric_name_.c_str(), metric_name_.c_str(), metric_data, metric_, "linespoints pt 7");
    gp << "unset multiplot\n";
    if (!out || !metric_out || !gp) return "plot not drawn: cannot write " + data;
  }
  pid_t pid;
  const char* argv[] = {"gnuplot", script.c_str(), nullptr};
  // gnuplot's messages go to curves.log: a warning is not the job's output.
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  const int spawned = posix_spawnp(&pid, "gnuplot", &files, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&files);
  if (spawned != 0) return "plot not drawn: gnuplot not found (apt install gnuplot-nox); data in " + data;
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "plot not drawn: gnuplot failed on " + script + " (see " + log + ")";
  return "plot: " + png;
}

}  // namespace psforge
