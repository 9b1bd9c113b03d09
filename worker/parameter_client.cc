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
  optimizer->Freeze(spec.FrozenIn({0, spec.num_params()}));
  spec.Initialize({0, spec.num_params()}, weights);
  std::vector<std::unique_ptr<EmbeddingTable>> tables;
  for (const TableOptions& t : spec.tables()) {
    PSF_ASSIGN_OR_RETURN(auto table, EmbeddingTable::Create(t));
    tables.push_back(std::move(table));
  }
  return std::unique_ptr<LocalParameterClient>(
      new LocalParameterClient(std::move(optimizer), weights, std::move(tables)));
}

Status LocalParameterClient::Pull(int64_t step, std::span<float> weights) {
  if (step != version_)
    return FailedPrecondition("pull of version " + std::to_string(step) + " but the weights are at " +
                              std::to_string(version_));
  if (weights.data() != weights_.data()) std::copy(weights_.begin(), weights_.end(), weights.begin());
  return Status::Ok();
}

Result<EmbeddingTable*> LocalParameterClient::TableOf(const SparseRows& r) {
  if (r.table >= tables_.size())
    return InvalidArgument("rows of sparse table " + std::to_string(r.table) + " but the model has " +
                           std::to_string(tables_.size()) + " tables");
  EmbeddingTable* table = tables_[r.table].get();
  if (r.dim != table->dim() || r.values.size() != r.rows.size() * static_cast<std::size_t>(table->dim()))
    return InvalidArgument("rows of table " + table->options().name + " with " + std::to_string(r.values.size()) +
                           " values for " + std::to_string(r.rows.size()) + " rows of dimension " +
                           std::to_string(table->dim()));
  for (std::size_t k = 0; k < r.rows.size(); ++k)
    if (r.rows[k] >= static_cast<uint64_t>(table->options().rows) || (k > 0 && r.rows[k] <= r.rows[k - 1]))
      return InvalidArgument("row " + std::to_string(r.rows[k]) + " of table " + table->options().name +
                             (r.rows[k] >= static_cast<uint64_t>(table->options().rows)
                                  ? " is outside the table's " + std::to_string(table->options().rows) + " rows"
                                  : " is not above the row before it (rows are sorted and unique)"));
  return table;
}

Status LocalParameterClient::PullRows(int64_t version, std::span<const SparseRows> rows) {
  if (version != version_)
    return FailedPrecondition("pull of version " + std::to_string(version) + " but the weights are at " +
                              std::to_string(version_));
  for (const SparseRows& r : rows) {
    PSF_ASSIGN_OR_RETURN(EmbeddingTable * table, TableOf(r));
    PSF_RETURN_IF_ERROR(table->Read(r.rows, r.values));
  }
  return Status::Ok();
}

Status LocalParameterClient::Push(int64_t step, std::span<const float> gradient, int64_t samples,
                                  const DataMark& /*mark*/, std::span<const SparseRows> rows) {
  if (step != version_)
    return FailedPrecondition("push for step " + std::to_string(step) + " but the weights are at " +
                              std::to_string(version_));
  if (gradient.size() != weights_.size())
    return InvalidArgument("gradient has " + std::to_string(gradient.size()) + " floats, expected " +
                           std::to_string(weights_.size()));
  std::vector<EmbeddingTable*> tables;
  for (const SparseRows& r : rows) {
    PSF_ASSIGN_OR_RETURN(EmbeddingTable * table, TableOf(r));
    tables.push_back(table);
  }
  if (samples > 0) {
    // A table refuses (and leaves alone) a gradient that is not finite.
    for (std::size_t i = 0; i < rows.size(); ++i) PSF_RETURN_IF_ERROR(tables[i]->Apply(rows[i].rows, rows[i].values));
    optimizer_->Apply(weights_, gradient);
  }
  ++version_;
  return Status::Ok();
}

}  // namespace psforge
