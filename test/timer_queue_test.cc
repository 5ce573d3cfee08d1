#include "ramdiskfs/timer_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "ramdiskfs/faults.h"

namespace ramdiskfs {
namespace {

constexpr int64_t kMs = 1'000'000;

// Records the order closures ran in.
class Recorder {
 public:
  void Add(int id) {
    std::lock_guard lock(mu_);
    order_.push_back(id);
  }
  std::vector<int> order() {
    std::lock_guard lock(mu_);
    return order_;
  }

 private:
  std::mutex mu_;
  std::vector<int> order_;
};

TEST(TimerQueueTest, RunsInDeadlineOrderNotScheduleOrder) {
  Recorder rec;
  absl::Notification done;
  TimerQueue q;
  const int64_t now = MonotonicNowNs();
  q.Schedule(now + 30 * kMs, [&] {
    rec.Add(3);
    done.Notify();
  });
  q.Schedule(now + 10 * kMs, [&] { rec.Add(1); });
  q.Schedule(now + 20 * kMs, [&] { rec.Add(2); });
  q.Schedule(now + 20 * kMs, [&] { rec.Add(22); });  // same deadline: FIFO
  done.WaitForNotification();
  EXPECT_EQ(rec.order(), (std::vector<int>{1, 2, 22, 3}));
}

TEST(TimerQueueTest, NeverEarly) {
  TimerQueue q;
  std::atomic<int64_t> ran_at{0};
  absl::Notification done;
  const int64_t deadline = MonotonicNowNs() + 5 * kMs;
  q.Schedule(deadline, [&] {
    ran_at = MonotonicNowNs();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_GE(ran_at.load(), deadline);
}

// The property fault latency needs: a long delay does not hold up a short
// one scheduled after it (no ordering by arrival), and a deadline in the
// past runs before every future one.
TEST(TimerQueueTest, ALongDelayDoesNotHoldUpAShortOne) {
  Recorder rec;
  absl::Notification short_done;
  TimerQueue q;
  const int64_t now = MonotonicNowNs();
  q.Schedule(now + 10'000 * kMs, [&] { rec.Add(2); });  // runs at destruction
  q.Schedule(now + 1 * kMs, [&] {
    rec.Add(1);
    short_done.Notify();
  });
  q.Schedule(now - 5 * kMs, [&] { rec.Add(0); });
  short_done.WaitForNotification();
  EXPECT_EQ(rec.order(), (std::vector<int>{0, 1}));
  EXPECT_EQ(q.pending(), 1u);
}

TEST(TimerQueueTest, DestructorRunsWhatIsPendingOnce) {
  std::atomic<int> runs{0};
  {
    TimerQueue q;
    for (int i = 0; i < 100; ++i) {
      q.Schedule(MonotonicNowNs() + 3600'000 * kMs, [&] { runs.fetch_add(1); });
    }
  }
  EXPECT_EQ(runs.load(), 100);
}

TEST(TimerQueueTest, RunAllNowRunsEverythingInOrder) {
  Recorder rec;
  TimerQueue q;
  const int64_t now = MonotonicNowNs();
  q.Schedule(now + 3600'000 * kMs, [&] { rec.Add(2); });
  q.Schedule(now + 1800'000 * kMs, [&] { rec.Add(1); });
  q.RunAllNow();
  EXPECT_EQ(rec.order(), (std::vector<int>{1, 2}));
  EXPECT_EQ(q.pending(), 0u);
}

TEST(TimerQueueTest, ClosuresMayScheduleAndOwnMoveOnlyState) {
  TimerQueue q;
  absl::Notification done;
  auto buffer = std::make_unique<int>(7);
  q.Schedule(MonotonicNowNs(), [&q, &done, buffer = std::move(buffer)]() mutable {
    q.Schedule(MonotonicNowNs() + kMs, [&done, value = *buffer] {
      EXPECT_EQ(value, 7);
      done.Notify();
    });
  });
  done.WaitForNotification();
}

// Many threads schedule at once (TSan checks the locking); each closure
// runs exactly once and none before its deadline.
TEST(TimerQueueTest, ConcurrentSchedule) {
  constexpr int kThreads = 8, kEach = 500;
  std::atomic<int> runs{0}, early{0};
  {
    TimerQueue q;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          const int64_t deadline = MonotonicNowNs() + ((t * 7 + i) % 5) * kMs / 4;
          q.Schedule(deadline, [&, deadline] {
            if (MonotonicNowNs() < deadline) early.fetch_add(1);
            runs.fetch_add(1);
          });
        }
      });
    }
    for (std::thread& t : threads) t.join();
    while (q.pending() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(runs.load(), kThreads * kEach);
  EXPECT_EQ(early.load(), 0);
}

}  // namespace
}  // namespace ramdiskfs
