#include "worker/parameter_client.h"

#include <algorithm>
#include <string>

namespace psforge {

Result<std::unique_ptr<LocalParameterClient>> LocalParameterClient::Create(
    const ModelSpec& spec, const OptimizerOptions& options, std::span<float> weights) {
  if (static_cast<int64_t>(weights.size()) != spec.num_params())
    return InvalidArgument("weight buffer has " + std::to_string(weights.size()) +
                           " floats, the model " + std::to_string(spec.num_params()));
  PSF_ASSIGN_OR_RETURN(auto optimizer, Optimizer::Create(options, spec.num_params()));
  spec.Initialize({0, spec.num_params()}, weights);
  return std::unique_ptr<LocalParameterClient>(
      new LocalParameterClient(std::move(optimizer), weights));
}

Status LocalParameterClient::Pull(int64_t step, std::span<float> weights) {
  if (step != version_)
    return FailedPrecondition("pull of version " + std::to_string(step) + " but the weights are at " +
                              std::to_string(version_));
  if (weights.data() != weights_.data()) std::copy(weights_.begin(), weights_.end(), weights.begin());
  return Status::Ok();
}

Status LocalParameterClient::Push(int64_t step, std::span<const float> gradient, int64_t samples,
                                  const DataMark& /*mark*/) {
  if (step != version_)
    return FailedPrecondition("push for step " + std::to_string(step) + " but the weights are at " +
                              std::to_string(version_));
  if (gradient.size() != weights_.size())
    return InvalidArgument("gradient has " + std::to_string(gradient.size()) + " floats, expected " +
                           std::to_string(weights_.size()));
  if (samples > 0) optimizer_->Apply(weights_, gradient);
  ++version_;
  return Status::Ok();
}

}  // namespace psforge
