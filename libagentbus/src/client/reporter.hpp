// reporter.hpp — where every refusal an agent makes or hears of goes (internal): a
// counter in agent_stats, a rate-limited log line (util::log_limiter: a flood of
// refused envelopes cannot flood the log) and the application's on_rejected handler,
// run on the dispatch thread.
//
// Thread-safe; the handler's mutex is a leaf.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "agentbus/agent.hpp"
#include "client/dispatcher.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::client {

class reporter {
 public:
  reporter(std::string agent_name, dispatcher& d) : name_(std::move(agent_name)), dispatcher_(d) {}

  void set_handler(rejection_handler h);
  // report counts `r` by where it happened (receiver, broker, sender), logs it
  // (rate-limited per reason) and hands it to on_rejected.
  void report(rejection r);

  // note logs (rate-limited per kind) something dropped that is not an envelope of
  // anyone's, such as a control message with a bad MAC: no peer to report it to.
  void note(std::string_view kind, const std::string& text);

  std::uint64_t rejected_at_receive() const noexcept { return at_receive_.load(); }
  std::uint64_t refused_by_broker() const noexcept { return by_broker_.load(); }
  std::uint64_t failed_at_sender() const noexcept { return at_sender_.load(); }

 private:
  const std::string name_;
  dispatcher& dispatcher_;
  util::log_limiter limiter_;
  std::mutex mu_;
  rejection_handler handler_;
  std::atomic<std::uint64_t> at_receive_{0}, by_broker_{0}, at_sender_{0};
};

}  // namespace agentbus::client
