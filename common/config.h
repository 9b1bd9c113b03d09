// The job config: one YAML file parsed into validated option structs.
//
// Every field is checked once, here; a wrong field (unknown key, wrong type,
// value out of range, missing data file) yields one InvalidArgument whose
// message names the field and what is allowed. Command-line overrides are
// applied to the YAML tree before validation, so they get the same checks.
// Relative data paths are resolved against the config file's folder.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/dtype.h"
#include "common/layer_kinds.h"
#include "common/status.h"

namespace psforge {

enum class ModelKind { kMlp, kLinearRegression, kLogisticRegression, kSequential, kCtr };
enum class Activation { kRelu, kSigmoid, kTanh };
enum class DataFormat { kIdx, kCsv, kText, kCriteo };
// What a text model learns (data.task): the next character at every
// position; the characters hidden at masked positions (BERT's pre-training);
// the class of a record (its file).
enum class TextTask { kNext, kMasked, kClassify };
enum class OptimizerKind { kSgd, kMomentum, kAdam, kAdaGrad, kAdamW, kRmsProp };
enum class Consistency { kBsp, kSsp, kAsp };
enum class LrSchedule { kConstant, kExponential, kCosine };

const char* ModelKindName(ModelKind k);
const char* ActivationName(Activation a);
const char* DataFormatName(DataFormat f);
const char* OptimizerKindName(OptimizerKind k);
const char* ConsistencyName(Consistency c);
const char* LrScheduleName(LrSchedule s);

// One sparse embedding table (model.tables): rows hashed from feature ids,
// spread over the servers by row, created on first touch with the
// initialiser of their row id, and updated by a row-wise optimizer only
// where a batch touched them.
enum class RowInit { kUniform, kNormal };
enum class RowOptimizerKind { kSgd, kAdaGrad, kLazyAdam };
struct TableOptions {
  std::string name;                 // unique in the model
  int64_t rows = int64_t{1} << 24;  // [1, 2^40]: feature ids are hashed into them
  int64_t dim = 16;                 // [1, 1024]
  RowInit init = RowInit::kUniform; // uniform: U(-init_scale, init_scale); normal: N(0, init_scale^2)
  double init_scale = 0.05;         // >= 0
  RowOptimizerKind optimizer = RowOptimizerKind::kAdaGrad;  // sgd | adagrad | lazy_adam
  double learning_rate = 0.05;      // > 0
  double epsilon = 1e-8;            // adagrad, lazy_adam: > 0
  double beta1 = 0.9, beta2 = 0.999;  // lazy_adam: in [0, 1)
  double initial_accumulator = 0.0; // adagrad: each row's starting sum, >= 0
  uint64_t seed = 0;                // of the initialiser and the feature hash
};

// model: what network to build.
struct ModelOptions {
  ModelKind kind = ModelKind::kMlp;           // mlp | linear_regression | logistic_regression | sequential | ctr
  std::vector<int64_t> hidden = {500};        // mlp, ctr: hidden layer widths (may be empty)
  Activation activation = Activation::kRelu;  // mlp, ctr: relu | sigmoid | tanh
  int64_t classes = 10;                       // mlp, sequential: number of output classes (>= 2);
                                              // with text data: the vocabulary's size, from the data
  // sequential: the shape of one sample ([channels, height, width] or
  // [features]; empty: [features]) and the layers in order, the last one
  // giving `classes` outputs to a softmax cross-entropy (common/layer_kinds.h).
  std::vector<int64_t> input_shape;
  std::vector<LayerOptions> layers;
  uint64_t init_seed = 42;                    // seed of every tensor's initialiser
  // A NumPy .npz file of tensors to start from (ps-export's format, or a
  // PyTorch state_dict saved with numpy.savez under psforge's names): every
  // tensor of the model is read from it, except those whose names start
  // with one of `init_fresh` (a new head: they keep their initialiser, and
  // the file's tensors of those names are ignored). A tensor missing from
  // the file, one of another shape, or one the model does not have is an
  // error naming each. init_from may also name a trained job: its config
  // (.yaml), a run directory or its checkpoints/ folder, whose newest
  // committed checkpoint is read (common/init_source.h). "": every tensor
  // from its initialiser. Relative: to the config's folder.
  std::string init_from;
  std::vector<std::string> init_fresh;
  // Tensors whose names start with one of these are not trained: they keep
  // their initial values (init_from's) while the others learn (fine-tuning
  // a head on a frozen encoder). Every entry must match a tensor.
  std::vector<std::string> freeze;
  // Sparse embedding tables (served by row). ctr: one table shared by every
  // categorical field (its ids salted by the field), or one per field in
  // field order; each field's embedding is the sum of its ids' rows
  // (sum-pooled), concatenated after the dense features into the MLP,
  // which ends in one logit and a sigmoid cross-entropy.
  std::vector<TableOptions> tables;
};

// data: where the training and test sets come from.
struct DataOptions {
  DataFormat format = DataFormat::kIdx;  // idx | csv | text | criteo
  // idx: image and label files, gzip or plain.
  std::string train_images, train_labels, test_images, test_labels;
  float pixel_scale = 1.0f / 255.0f;     // idx: multiplies every pixel byte
  bool standardize = false;              // shift and scale features to the training set's
                                         // mean 0, variance 1 (one mean and std over all features)
  // csv: numeric columns, one of them the label.
  std::string train_csv, test_csv;
  int64_t label_column = -1;             // csv: index of the label column; -1 = last
  bool csv_header = true;                // csv: first line holds column names
  // criteo: click logs in the Criteo TSV layout (common/criteo.h): a 0/1
  // label, 13 integer and 26 hexadecimal categorical features a line; the
  // integers enter the model as sign(x) log(1 + |x|), missing ones as 0.
  std::string train_tsv, test_tsv;
  bool skip_malformed = false;           // criteo: count and skip malformed lines instead of failing
  // criteo: a click log whose file is at most this many MiB is parsed once,
  // into memory (about as much as the file), before training; a larger one
  // is streamed from disk, a block of records at a time, every epoch. 0:
  // always stream.
  int64_t preload_mb = 1024;
  // text: character-level language modelling. The files (a folder: its
  // regular files, sorted, skipping symbolic links and files with NUL
  // bytes) are concatenated and cut into windows of `window` + 1 bytes,
  // one record each (inputs: the first `window` characters; targets: the
  // `window` characters after each). Every `validation_every`-th window is
  // the validation set (the "test set" of the other formats). The
  // vocabulary is the set of bytes that occur, in byte order.
  //
  // data.task masked and classify cut the same text into records another
  // way. Each file is a list of records separated by lines holding only
  // "%" (the fortunes format; a file without such lines is one record), and
  // the split is by record: a record is validation data when a hash of its
  // text falls in the validation_every-th part, so that a record lands on the
  // same side in every job that reads it (a classifier's test records are
  // never in its encoder's pre-training). Their models' input ids are the
  // vocabulary's and one more, [MASK] (the vocabulary's size), so that a
  // classifier's embedding has the shape of the pre-trained one.
  //   masked: the training records, each followed by its "%" line, are
  //   concatenated and cut into windows of `window` (the validation records
  //   likewise); in every window 15% of the positions are chosen, per
  //   epoch, and of those 80% become [MASK], 10% a random character, 10%
  //   stay; the loss and the metrics (masked_accuracy, masked_bits_per_char)
  //   are over the chosen positions only.
  //   classify: a record of a file named in `classes` is one sample, its
  //   class that file's index in `classes`; its input is its text and its
  //   "%" line, repeated to fill `window` characters (cut at `window`).
  //   The vocabulary still comes from every file of `text`, so that it is
  //   the pre-trained model's.
  std::vector<std::string> text;
  int64_t window = 64;                   // text: characters per record, >= 1
  int64_t validation_every = 10;         // text: >= 2
  TextTask task = TextTask::kNext;       // text: next | masked | classify
  std::vector<std::string> classes;      // classify: file names (without folder) under `text`, one per class
  // Records per data shard: the unit a cluster worker leases. The training
  // set, in one seeded permutation, is cut into shards of this many records;
  // every epoch visits the shards in a new seeded order, each shuffled inside.
  int64_t shard_size = 2048;             // >= 1
  // idx, csv: the classes' names, in label order (model.classes of them), for
  // the exported model and its users; empty: not known.
  std::vector<std::string> label_names;
};

// optimizer: how weights are updated from the (averaged) gradient.
struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdam;  // sgd | momentum | adam | adagrad | adamw | rmsprop
  double learning_rate = 1e-3;                // > 0
  // How the rate changes over the updates: constant; exponential (the rate
  // is multiplied by lr_decay_rate every lr_decay_steps updates, smoothly in
  // between); cosine (from learning_rate down to lr_min over
  // lr_schedule_steps updates along half a cosine, then lr_min, as torch's
  // CosineAnnealingLR). Without lr_schedule: exponential when lr_decay_steps
  // is set, else constant.
  LrSchedule lr_schedule = LrSchedule::kConstant;
  double lr_decay_rate = 1.0;                 // in (0, 1]
  int64_t lr_decay_steps = 0;                 // >= 0
  double lr_min = 0.0;                        // cosine: the final rate, in [0, learning_rate]
  int64_t lr_schedule_steps = 0;              // cosine: 0 = the job's length (ResolveJobLength)
  // Linear warm-up: update t < lr_warmup_steps runs at the schedule's rate
  // times (t + 1) / lr_warmup_steps. A cosine starts when the warm-up ends
  // and falls over the lr_schedule_steps - lr_warmup_steps updates after it.
  int64_t lr_warmup_steps = 0;                // >= 0; cosine: at most lr_schedule_steps
  double momentum = 0.9;                      // momentum, rmsprop: in [0, 1) (rmsprop default 0: off)
  bool nesterov = false;                      // momentum: Nesterov update
  double beta1 = 0.9, beta2 = 0.999;          // adam, adamw: in [0, 1)
  double alpha = 0.99;                        // rmsprop: smoothing of the squared gradient, in [0, 1)
  bool centered = false;                      // rmsprop: divide by the gradient's estimated variance
  double epsilon = 1e-8;                      // adam, adamw, adagrad, rmsprop: > 0 (adagrad default 1e-10)
  // L2: weight_decay * w is added to the gradient; adamw instead decouples
  // it (w *= 1 - lr * weight_decay before the step, as torch's AdamW).
  double weight_decay = 0.0;                  // >= 0 (adamw default 0.01)
  double l1 = 0.0;                            // L1 term l1 * sign(w) added to the gradient, >= 0
  double clip_value = 0.0;                    // clamp each gradient element to +-v; 0 = off
  double clip_norm = 0.0;                     // rescale the gradient to this L2 norm at most; 0 = off
};

// training: the loop.
struct TrainingOptions {
  int64_t epochs = 10;       // >= 1
  int64_t max_steps = 0;     // stop after this many steps (0 = run all epochs)
  int64_t batch_size = 128;  // >= 1
  int64_t threads = 1;       // compute threads per process, >= 1
  uint64_t seed = 1;         // data order
  bool shuffle = true;       // reshuffle the training set every epoch
  double progress_interval_s = 1.0;  // seconds between progress updates
};

inline constexpr double kDefaultConnectTimeoutS = 30;

// cluster: the distributed run (ps-server, ps-worker).
struct ClusterOptions {
  int64_t servers = 2;                  // parameter servers, >= 1
  int64_t workers = 2;                  // workers, >= 1
  Consistency consistency = Consistency::kBsp;  // bsp | ssp | asp
  int64_t staleness = 1;                // ssp: a pull at step t waits for version >= t - staleness
  double request_timeout_s = 60;        // a worker gives up on a server reply after this long
  double retry_interval_s = 1;          // a request unanswered this long is sent again (then 2x, 4x, ... 8x)
  int64_t max_parked_pulls = 1024;      // a server refuses pulls beyond this many waiting
  int64_t server_threads = 1;           // optimizer threads per server (servers share cores with workers)
  // Sparse tables: the memory a server may give its tables' rows, in MiB
  // (0: no limit, every row in memory). Beyond it the least recently used
  // rows (CLOCK) go to a RocksDB store in spill_dir and come back when a
  // batch touches them; the budget is shared by a server's tables in
  // proportion to their declared rows x row size.
  int64_t memory_budget_mb = 0;
  // Where servers keep their evicted rows: <spill_dir>/server-<i>, emptied
  // when a server starts (they are a cache of the server's own memory; the
  // checkpoints are what is durable). "": <run directory>/spill, or the
  // system's temporary folder without one. Relative: to the config's folder.
  std::string spill_dir;
  // A worker and a server on the same host pass payloads through shared
  // memory (common/shared_region.h) instead of socket frames.
  bool shared_memory = true;
  // The type dense gradients and weights travel in between workers and
  // servers: f32, or bf16 / fp16 (half the bytes; common/dtype.h). Servers
  // keep float32 weights; a worker adds what rounding its gradient lost to
  // its next gradient (error feedback).
  DType wire_dtype = DType::kF32;
  // Payloads in frames (between hosts, or cluster.shared_memory false) go in
  // parts of this many KiB of float32 keys, each its own message: a server
  // checks, sums and applies a part and sends its new weights back while the
  // next part is on the wire. 0: one message per server a step.
  int64_t chunk_kb = 512;
  // BSP through frames: a worker sends each part as soon as backward has
  // made its gradient final (the last layers' parts first), so servers sum
  // and apply them while the first layers' backward still runs.
  bool push_during_backward = true;
  // BSP through frames: a worker starts its next forward pass once the
  // first part of each server's weights is back, and waits for a later
  // part only when the forward pass reaches its keys (an MLP's first layer
  // is computed part by part).
  bool priority_pulls = true;
  double heartbeat_interval_s = 0.5;    // servers and workers report to the coordinator this often
  double peer_timeout_s = 10;           // a peer silent this long is declared dead
  // How long one member waits for another to come (back): the coordinator
  // for the servers to load a restart's weights, a server or worker for a
  // coordinator gone silent. (Before a server or worker has joined it knows
  // no job: its --connect-timeout, kDefaultConnectTimeoutS unless given.)
  double connect_timeout_s = kDefaultConnectTimeoutS;
  double stall_report_s = 10;           // the coordinator reports a step that waits longer than this
  // The coordinator's limits per peer connection; one that exceeds either
  // is cut off (its messages dropped) for cutoff_s, and logged.
  double max_requests_per_s = 20000;    // messages of any kind, bursts of a second's worth
  double max_registrations_per_s = 5;   // registrations
  double cutoff_s = 10;
  std::string http = "127.0.0.1:0";     // the coordinator's HTTP status endpoint, host:port
                                        // (port 0: the OS picks; "" turns it off)
  // After the job: when something has scraped /metrics, the endpoint stays
  // up until its next scrape (so it sees the final values), at most this long.
  double http_linger_s = 30;            // [0, 3600]; 0: stop at once
  // Fault injection for chaos tests (common/fault_transport.h: ParseFaultOptions),
  // for every server and worker of the job; "": none. A --faults flag
  // replaces it for one process.
  std::string faults;
};

// Durable weights: each server writes its key range, the optimizer state and
// the workers' data positions to its own store every interval_steps steps
// (or at a step the coordinator picks every interval_s seconds), in the
// background; the coordinator commits a step once every server has.
// Checkpoints are on by default, every kDefaultCheckpointIntervalS seconds
// and at the end of the job, into the run directory.
inline constexpr double kDefaultCheckpointIntervalS = 10;
struct CheckpointOptions {
  int64_t interval_steps = 0;  // 0: not by steps
  double interval_s = kDefaultCheckpointIntervalS;  // 0: not by time (at most one of the two is set;
                                                    // setting interval_steps alone makes this 0)
  int64_t keep = 3;            // committed checkpoints a server keeps (older ones are pruned)
  std::string dir;             // server i's store is <dir>/server-<i> (relative: to the config's
                               // folder; "": <run directory>/checkpoints, and off without one)
  // A checkpoint write still going after this long (a hung disk) is given
  // up on: whatever waits for it (a restart's load, the job's end) goes on
  // with a DeadlineExceeded naming the write.
  double write_timeout_s = 30;
  bool enabled() const { return interval_steps > 0 || interval_s > 0; }
};

// ZeroMQ CURVE on every socket (common/curve.h), for the coordinator and
// for what ps-launch starts: on when `key` is set. Servers and workers
// started by hand take --key and --cluster-keys instead (they need them to
// reach the coordinator, before they learn the job).
struct SecurityOptions {
  std::string key;           // this host's key pair file (relative: to the config's folder)
  std::string cluster_keys;  // the cluster's public keys (ps-keys writes both)
  // Without CURVE, the coordinator binds only loopback (and servers bind
  // only loopback) unless this says the job's traffic may cross a network
  // in the clear.
  bool plaintext = false;
  bool curve() const { return !key.empty(); }
};

struct JobConfig {
  std::string path;  // the file it came from ("" when built in code)
  ModelOptions model;
  DataOptions data;
  OptimizerOptions optimizer;
  TrainingOptions training;
  ClusterOptions cluster;
  CheckpointOptions checkpoint;
  SecurityOptions security;
};

// The number of optimizer updates a job of `records` training records makes
// (epochs x ceil(records / batch_size), at most training.max_steps): a
// cosine schedule's length when lr_schedule_steps is 0.
int64_t JobUpdates(const JobConfig& config, int64_t records);
// Fills in what the data decides: a cosine schedule's length.
void ResolveJobLength(JobConfig* config, int64_t records);

// One "section.field=value" override from the command line.
using ConfigOverride = std::pair<std::string, std::string>;

// Parses and validates `yaml_text`. `origin` names the text in messages;
// `base_dir` resolves relative paths.
Result<JobConfig> ParseJobConfig(const std::string& yaml_text, const std::string& origin,
                                 const std::string& base_dir,
                                 const std::vector<ConfigOverride>& overrides = {});

// Reads, parses and validates the file at `path`.
Result<JobConfig> LoadJobConfig(const std::string& path,
                                const std::vector<ConfigOverride>& overrides = {});

// Parses "a.b=value" into an override; an error names the text.
Result<ConfigOverride> ParseOverride(const std::string& text);

// The learning rate of update number `steps` (from 0) under the options'
// schedule: constant; learning_rate * lr_decay_rate^(steps / lr_decay_steps);
// or cosine from learning_rate to lr_min over the lr_schedule_steps -
// lr_warmup_steps updates after the warm-up; times (steps + 1) /
// lr_warmup_steps during the warm-up.
double ScheduledLearningRate(const OptimizerOptions& o, int64_t steps);

nlohmann::json ConfigToJson(const JobConfig& config);

// What evaluation reports: "test_accuracy", "test_mse" (linear regression),
// "test_auc" (ctr), "validation_bits_per_char" (text; lower is better) or
// "masked_accuracy" (text, task masked).
const char* MetricName(const JobConfig& config);
// The second metric a job reports besides MetricName ("test_logloss" for
// ctr, "masked_bits_per_char" for data.task masked), or nullptr.
const char* SecondMetricName(const JobConfig& config);
const char* TextTaskName(TextTask task);

}  // namespace psforge
