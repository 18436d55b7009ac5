#include "client/dispatcher.hpp"

#include <spdlog/spdlog.h>

namespace agentbus::client {

dispatcher::dispatcher(std::size_t capacity, std::string agent_name, std::function<void()> on_room)
    : capacity_(capacity), name_(std::move(agent_name)), on_room_(std::move(on_room)) {}

dispatcher::~dispatcher() { stop(); }

void dispatcher::start() { thread_ = std::thread([this] { run(); }); }

void dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool dispatcher::push(std::function<void()> job) {
  std::vector<std::function<void()>> one;
  one.push_back(std::move(job));
  return push_all(one) == 0;
}

std::size_t dispatcher::push_all(std::vector<std::function<void()>>& jobs) {
  std::size_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& job : jobs) {
      if (jobs_.size() >= hard_limit()) ++dropped;
      else jobs_.push_back(std::move(job));
    }
  }
  cv_.notify_one();
  if (dropped > 0) {
    const std::uint64_t before = dropped_.fetch_add(dropped);
    if (before / 1000 != (before + dropped) / 1000 || before == 0)
      spdlog::error("[{}] dispatch queue beyond its hard limit: {} jobs dropped so far", name_, before + dropped);
  }
  return dropped;
}

std::size_t dispatcher::room() const {
  std::lock_guard lock(mu_);
  return jobs_.size() >= capacity_ ? 0 : capacity_ - jobs_.size();
}

bool dispatcher::saturated() const {
  std::lock_guard lock(mu_);
  return jobs_.size() >= capacity_;
}

void dispatcher::run() {
  for (;;) {
    std::function<void()> job;
    bool room = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      // What was queued before stop runs: verified deliveries and reports are not
      // dropped because the agent is being destroyed.
      if (jobs_.empty()) return;
      room = jobs_.size() == capacity_;  // taking this one makes room below the limit
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (room && on_room_) on_room_();
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("[{}] handler threw: {}", name_, e.what());
    } catch (...) {
      spdlog::error("[{}] handler threw a non-standard exception", name_);
    }
  }
}

}  // namespace agentbus::client
