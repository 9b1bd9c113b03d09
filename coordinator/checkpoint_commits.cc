#include "coordinator/checkpoint_commits.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace psforge {
namespace {

Clock::duration Duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

std::optional<int64_t> CheckpointCommits::Committable(const std::vector<Member>& servers) const {
  if (servers.empty() || collecting_) return std::nullopt;
  std::optional<int64_t> step;
  for (int64_t candidate : servers[0].durable)
    if (candidate > committed_ &&
        std::all_of(servers.begin(), servers.end(), [&](const Member& s) { return s.durable.count(candidate) > 0; }))
      step = candidate;
  return step;
}

void CheckpointCommits::Commit(int64_t step) {
  committed_ = step;
  ++commits_;
}

void CheckpointCommits::Plan(Clock::time_point now, int64_t step) {
  if (options_.interval_s <= 0 || collecting_) return;
  const bool first = plan_.next == Clock::time_point{};  // the first interval starts once every server is in
  if (!first && (now < plan_.next || planned_ > step)) return;  // not yet, or the last pick is still ahead
  const auto last = std::exchange(plan_, {now + Duration(options_.interval_s), now, step, plan_.lead});
  if (first) return;
  // The last pick passed uncommitted: a server heard of it too late (or is
  // still writing it). Aim further ahead from now on.
  if (planned_ > committed_) plan_.lead = std::min(plan_.lead * 2, 16.0);
  // A server hears of the pick with its next heartbeat: aim two heartbeat
  // intervals ahead at the servers' current rate.
  const double seconds = std::chrono::duration<double>(now - last.at).count();
  const double rate = seconds > 0 ? static_cast<double>(step - last.step) / seconds : 0;
  planned_ = step + 1 + static_cast<int64_t>(std::ceil(rate * 2 * heartbeat_interval_s_ * plan_.lead));
}

void CheckpointCommits::Resume(std::vector<CommittedCheckpoint> committed, uint32_t last_generation) {
  candidates_ = std::move(committed);
  generation_ = last_generation + 1;
  restore_step_ = candidates_.empty() ? 0 : candidates_.back().step;
  resumed_from_ = restore_step_;
}

void CheckpointCommits::RollBack(int64_t at_most, std::optional<std::vector<CommittedCheckpoint>> committed) {
  ++generation_;
  ++restarts_;
  rolled_back_ = true;
  restore_step_ = std::min(committed_, at_most);
  if (!committed) return;
  candidates_ = std::move(*committed);
  // The newest committed one at or before the step asked for.
  std::optional<int64_t> found;
  for (const auto& c : candidates_)
    if (c.step <= restore_step_) found = c.step;
  if (restore_step_ > 0) restore_step_ = found.value_or(0);
}

bool CheckpointCommits::FallBack() {
  std::optional<CommittedCheckpoint> older;
  for (const auto& c : candidates_)
    if (c.step < restore_step_) older = c;
  if (!older) return false;
  ++generation_;
  restore_step_ = older->step;
  if (resumed_from_ >= 0) resumed_from_ = restore_step_;
  return true;
}

void CheckpointCommits::BeginCollecting(Clock::time_point now) {
  collecting_ = true;
  collecting_since_ = now;
  committed_ = restore_step_;
  planned_ = 0;
  plan_.next = {};
}

void CheckpointCommits::EndCollecting(Clock::time_point now, double rejoin_s) {
  collecting_ = false;
  if (rolled_back_) rejoin_deadline_ = now + Duration(rejoin_s);
}

bool CheckpointCommits::RejoinDeadlinePassed(Clock::time_point now) {
  if (rejoin_deadline_ == Clock::time_point{} || collecting_ || now < rejoin_deadline_) return false;
  rejoin_deadline_ = {};
  return true;
}

uint32_t CheckpointCommits::GenerationOf(int64_t step) const {
  uint32_t from = 0;
  for (const auto& c : candidates_)
    if (c.step == step) from = c.generation;
  return from;
}

}  // namespace psforge
