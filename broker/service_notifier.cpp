// service_notifier.cpp — sd_notify for Type=notify and the watchdog (libsystemd).
#include "service_notifier.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

namespace agentbus::broker {

service_notifier::service_notifier() {
  uint64_t usec = 0;
  // > 0: WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
    spdlog::info("systemd watchdog: pinging every {} ms from the event loop", usec / 2000);
  }
}

void service_notifier::ready(const std::string& status) {
  const std::string msg = "READY=1\nSTATUS=" + status;
  if (sd_notify(0, msg.c_str()) < 0) spdlog::warn("sd_notify READY=1 failed");
  last_ping_ = std::chrono::steady_clock::now();
  if (watchdog_.count() > 0) sd_notify(0, "WATCHDOG=1");
}

void service_notifier::stopping() { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

void service_notifier::tick() {
  if (watchdog_.count() == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ping_ < watchdog_ / 2) return;
  last_ping_ = now;
  sd_notify(0, "WATCHDOG=1");
}

}  // namespace agentbus::broker
