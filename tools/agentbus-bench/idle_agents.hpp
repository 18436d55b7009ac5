// idle_agents.hpp — many enrolled agents that send nothing, for the broker's
// memory per agent (issue 5: resident set with 1,000 enrolled agents).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"
#include "enrolment.hpp"

namespace agentbus {
class policy;
}

namespace agentbus::bench {

// idle_agents enrols `count` software-key agents of `role` with the broker at
// `endpoint` through the public API (the full HELLO → CHALLENGE → PROOF → WELCOME
// handshake each), `parallel` at a time, and keeps them connected until it is
// destroyed. Each agent is a full agentbus::agent: its own ZeroMQ context (one
// I/O thread plus libzmq's reaper), an io thread and a dispatch thread, an
// eventfd and a socket — about 4 threads and 8 descriptors an agent, so 1,000
// of them fit one process within ordinary limits. The constructor throws the
// first enrolment failure (after disconnecting the ones already enrolled).
// Not thread-safe.
class idle_agents {
 public:
  struct options {
    std::string endpoint;
    std::string role = "DEBUGGER";
    std::string name_prefix;              // agent i is "<prefix><i>"
    std::filesystem::path key_dir;        // a software key per agent below it
    int count = 0;
    int parallel = 4;
    const enrolment_access* access = nullptr;  // the fingerprint and tokens (required)
  };
  idle_agents(const options& opts, std::shared_ptr<const policy> pol);
  ~idle_agents();
  idle_agents(const idle_agents&) = delete;
  idle_agents& operator=(const idle_agents&) = delete;

  std::size_t size() const noexcept { return agents_.size(); }
  // reenrolments sums agent_stats::reenrolments: how often the broker stopped
  // knowing one of them (unknown_agent) and it enrolled again.
  std::uint64_t reenrolments() const;

 private:
  void disconnect_all(int parallel);
  std::vector<std::unique_ptr<agent>> agents_;
  int parallel_ = 4;
};

}  // namespace agentbus::bench
