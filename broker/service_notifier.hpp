// service_notifier.hpp — telling systemd how the broker is (sd_notify, Type=notify).
//
// READY=1 once every endpoint is bound and the admin endpoint answers, STOPPING=1 when
// a stop begins, and, when the unit sets WatchdogSec=, WATCHDOG=1 from the event loop
// itself at half the interval: a loop that stops turning (a deadlock, a handler that
// never returns) stops the pings, and systemd restarts the broker. Without
// $NOTIFY_SOCKET (not started by systemd) every call does nothing.
//
// Thread: the broker's main thread (ready, stopping) and its event loop (tick), which
// is the same thread.
#pragma once

#include <chrono>
#include <string>

namespace agentbus::broker {

class service_notifier {
 public:
  service_notifier();

  // ready says READY=1 with a STATUS= line.
  void ready(const std::string& status);
  // stopping says STOPPING=1.
  void stopping();
  // tick is called from every turn of the event loop; it pings the watchdog when half
  // its interval has passed since the last ping.
  void tick();

  // watchdog_interval is the interval the unit set (0: no watchdog).
  std::chrono::microseconds watchdog_interval() const noexcept { return watchdog_; }

 private:
  std::chrono::microseconds watchdog_{0};
  std::chrono::steady_clock::time_point last_ping_{};
};

}  // namespace agentbus::broker
