// service_notifier.hpp — telling systemd how the broker is (sd_notify, Type=notify).
//
// READY=1 once every endpoint is bound, STOPPING=1 when a stop begins, and, when the
// unit sets WatchdogSec=, WATCHDOG=1 at half the interval for as long as the event loop
// keeps turning: the loop only counts its turns (tick), and a thread of the notifier's
// own sends the ping when the count has moved since the last one. A loop that stops
// turning (a deadlock, a call that never returns) stops the pings and systemd restarts
// the broker; a systemd slow to read its socket never holds the loop up (sd_notify may
// block on a full socket). Without $NOTIFY_SOCKET (not started by systemd) nothing is sent.
//
// Threads: ready and stopping on the broker's main thread, tick on its event loop
// (the same thread); the pinger thread reads the turn count only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace agentbus::broker {

class service_notifier {
 public:
  service_notifier();
  ~service_notifier();
  service_notifier(const service_notifier&) = delete;
  service_notifier& operator=(const service_notifier&) = delete;

  // ready says READY=1 with a STATUS= line and starts the watchdog pings (once).
  void ready(const std::string& status);
  // reloading says RELOADING=1 (systemctl reload waits for the READY=1 that ends it;
  // call ready() again when the reload is over, applied or refused).
  void reloading();
  // stopping stops the pings and says STOPPING=1.
  void stopping();
  // tick is called on every turn of the event loop: one relaxed increment.
  void tick() noexcept { turns_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void ping_loop();

  std::chrono::microseconds watchdog_{0};
  std::atomic<std::uint64_t> turns_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread pinger_;
};

}  // namespace agentbus::broker
