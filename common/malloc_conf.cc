// Compiled into every psforge executable that uses jemalloc (see
// common/process_setup.h): turns off jemalloc's eager-purge arena for large
// blocks, so ZeroMQ's message buffers are reused instead of re-faulted.
// jemalloc reads this symbol when it initialises, before main.
extern "C" {
const char* malloc_conf = "oversize_threshold:0";
}
