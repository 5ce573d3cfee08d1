// TimerQueue: runs closures at a deadline on one thread of its own, so a
// request whose reply must wait (fault injection's latency and throttle)
// never holds up another: the FUSE worker that served it hands the reply
// to the queue and goes back for the next request. At queue depth 16 with
// 1 ms added, 16 replies leave per millisecond, each from this thread.
//
// A min-heap of (deadline, sequence) under a mutex, and one thread that
// sleeps on a condition variable until the earliest deadline. Closures due
// at the same time run in the order they were scheduled. The thread runs
// with a timer slack of 1 ns (PR_SET_TIMERSLACK): the default 50 us slack
// would add up to 5% to a 1 ms delay. Even so a timed sleep ends late (on
// the 2-core PVM guest of docs/benchmarks.md, 64 us late at the median for
// a 1 ms sleep), so the thread learns its own lateness (a moving average of
// how late each sleep ended, at most kMaxEarlyNs), sleeps that much less,
// and spins the rest of the way to the deadline: replies leave within a few
// microseconds of it, for a spin of about the lateness's spread. It blocks
// every signal, so that signals go to the thread the daemon keeps for them.
//
// Thread-safe. Closures run on the queue's thread, one at a time, with no
// lock held (so a closure may Schedule again); they must not block for
// long, since every later deadline waits behind them (a fuse_reply_* is a
// few microseconds).

#ifndef RAMDISKFS_TIMER_QUEUE_H_
#define RAMDISKFS_TIMER_QUEUE_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"

namespace ramdiskfs {

class TimerQueue {
 public:
  using Closure = absl::AnyInvocable<void() &&>;

  // Starts the thread.
  TimerQueue();
  // Runs every closure still queued at once (so that each pending request
  // still gets its one reply), then joins the thread.
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `closure` on the queue's thread at `deadline_ns` (CLOCK_MONOTONIC,
  // MonotonicNowNs() in faults.h) or as soon after it as the thread gets
  // the CPU; a deadline in the past runs next. After the destructor has
  // begun, runs `closure` on the caller's thread instead.
  void Schedule(int64_t deadline_ns, Closure closure);

  // Runs every queued closure now, on the caller's thread, in deadline
  // order (the daemon calls it when the FUSE loop has ended, so that every
  // delayed reply is sent before the session goes away).
  void RunAllNow();

  // Closures queued and not yet run.
  size_t pending() const;

 private:
  struct Entry {
    int64_t deadline_ns;
    uint64_t sequence;
    Closure closure;
  };
  // Orders the heap so that the earliest (deadline, sequence) is on top.
  static bool Later(const Entry& a, const Entry& b);
  void Run();

  // The most the thread wakes before a deadline to spin the rest.
  static constexpr int64_t kMaxEarlyNs = 200'000;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Entry> heap_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t early_ns_ ABSL_GUARDED_BY(mu_) = 0;  // how much before a deadline to wake
  std::thread thread_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_TIMER_QUEUE_H_
