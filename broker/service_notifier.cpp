// service_notifier.cpp — sd_notify for Type=notify and the watchdog (libsystemd).
#include "service_notifier.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

namespace agentbus::broker {

service_notifier::service_notifier() {
  uint64_t usec = 0;
  // > 0: WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
    spdlog::info("systemd watchdog: pinging every {} ms while the event loop turns", usec / 2000);
  }
}

service_notifier::~service_notifier() { stopping(); }

void service_notifier::reloading() {
  struct timespec now {};
  clock_gettime(CLOCK_MONOTONIC, &now);
  // MONOTONIC_USEC: what Type=notify-reload (systemd 253+) expects with RELOADING=1.
  const std::string msg = "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" +
                          std::to_string(static_cast<std::uint64_t>(now.tv_sec) * 1'000'000u +
                                         static_cast<std::uint64_t>(now.tv_nsec) / 1000u);
  if (sd_notify(0, msg.c_str()) < 0) spdlog::warn("sd_notify RELOADING=1 failed");
}

void service_notifier::ready(const std::string& status) {
  const std::string msg = "READY=1\nSTATUS=" + status;
  if (sd_notify(0, msg.c_str()) < 0) spdlog::warn("sd_notify READY=1 failed");
  if (watchdog_.count() > 0 && !pinger_.joinable()) pinger_ = std::thread([this] { ping_loop(); });
}

void service_notifier::stopping() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (pinger_.joinable()) pinger_.join();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void service_notifier::ping_loop() {
  std::uint64_t seen = turns_.load(std::memory_order_relaxed);
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, watchdog_ / 2, [this] { return stop_; })) {
    const std::uint64_t now = turns_.load(std::memory_order_relaxed);
    if (now == seen) {
      spdlog::error("the event loop has not turned for {} ms: no watchdog ping", watchdog_.count() / 2000);
      continue;
    }
    seen = now;
    lock.unlock();
    sd_notify(0, "WATCHDOG=1");
    lock.lock();
  }
}

}  // namespace agentbus::broker
