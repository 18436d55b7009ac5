#include "client/reporter.hpp"

#include <spdlog/spdlog.h>

namespace agentbus::client {

void reporter::set_handler(rejection_handler h) {
  std::lock_guard lock(mu_);
  handler_ = std::move(h);
}

void reporter::note(std::string_view kind, const std::string& text) {
  if (limiter_.allow(kind, name_)) spdlog::warn("[{}] {}", name_, text);
}

void reporter::report(rejection r) {
  if (r.where == "receiver") ++at_receive_;
  else if (r.where == "broker") ++by_broker_;
  else ++at_sender_;
  // One limit per (where, reason): the set of keys is fixed, whatever peers send.
  const std::string key = r.where + ":" + std::string(status_code_name(r.reason.code()));
  if (limiter_.allow(key, name_))
    spdlog::warn("[{}] {} refused an envelope from {} to {}: {}", name_, r.where, r.sender, r.recipient,
                 r.reason.to_string());
  dispatcher_.push([this, r = std::move(r)] {
    rejection_handler h;
    {
      std::lock_guard lock(mu_);
      h = handler_;
    }
    if (h) h(r);
  });
}

}  // namespace agentbus::client
