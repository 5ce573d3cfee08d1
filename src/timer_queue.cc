#include "ramdiskfs/timer_queue.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "ramdiskfs/faults.h"

namespace ramdiskfs {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool TimerQueue::Later(const Entry& a, const Entry& b) {
  if (a.deadline_ns != b.deadline_ns) return a.deadline_ns > b.deadline_ns;
  return a.sequence > b.sequence;
}

void TimerQueue::Schedule(int64_t deadline_ns, Closure closure) {
  bool earliest;
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      std::move(closure)();
      return;
    }
    const uint64_t sequence = next_sequence_++;
    heap_.push_back(Entry{deadline_ns, sequence, std::move(closure)});
    std::push_heap(heap_.begin(), heap_.end(), Later);
    earliest = heap_.front().sequence == sequence;
  }
  // Only a new earliest deadline changes how long the thread must sleep.
  if (earliest) wake_.notify_one();
}

void TimerQueue::RunAllNow() {
  std::vector<Entry> due;
  {
    std::lock_guard lock(mu_);
    due.swap(heap_);
  }
  std::sort(due.begin(), due.end(), [](const Entry& a, const Entry& b) { return Later(b, a); });
  for (Entry& entry : due) std::move(entry.closure)();
}

size_t TimerQueue::pending() const {
  std::lock_guard lock(mu_);
  return heap_.size();
}

void TimerQueue::Run() {
  // Signals belong to the daemon's signal thread: a SIGTERM delivered here
  // would take the default action and kill the daemon without unmounting.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // best effort: a failure only costs precision
  std::unique_lock lock(mu_);
  for (;;) {
    if (heap_.empty()) {
      if (stopping_) return;
      wake_.wait(lock);
      continue;
    }
    int64_t now = MonotonicNowNs();
    const int64_t deadline = heap_.front().deadline_ns;
    if (deadline - now > early_ns_ && !stopping_) {
      // steady_clock is CLOCK_MONOTONIC in libstdc++, the clock of the deadlines.
      const int64_t wake_at = deadline - early_ns_;
      const std::cv_status woke = wake_.wait_until(
          lock, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(wake_at)));
      if (woke == std::cv_status::timeout) {
        // How late the sleep ended; 1/8 of each new sample (as TCP's srtt).
        const int64_t late = std::clamp<int64_t>(MonotonicNowNs() - wake_at, 0, kMaxEarlyNs);
        early_ns_ += (late - early_ns_) / 8;
      }
      continue;
    }
    if (deadline > now && !stopping_) {
      // Within the lateness of a sleep: spin, without the lock, so that a
      // Schedule() of an earlier deadline is not held up.
      lock.unlock();
      while (now < deadline) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        now = MonotonicNowNs();
      }
      lock.lock();
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), Later);
    Closure closure = std::move(heap_.back().closure);
    heap_.pop_back();
    lock.unlock();
    std::move(closure)();
    lock.lock();
  }
}

}  // namespace ramdiskfs
