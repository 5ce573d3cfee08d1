#include "ramdiskfs/crash_point.h"

#include <atomic>
#include <cstdlib>

namespace ramdiskfs {
namespace {

std::string* armed_point = nullptr;
std::atomic<bool> armed{false};

}  // namespace

void SetCrashPoint(std::string point) {
  delete armed_point;
  armed_point = point.empty() ? nullptr : new std::string(std::move(point));
  armed.store(armed_point != nullptr, std::memory_order_release);
}

void CrashPoint(std::string_view point) {
  if (!armed.load(std::memory_order_relaxed)) [[likely]] {
    return;
  }
  if (*armed_point == point) abort();
}

}  // namespace ramdiskfs
