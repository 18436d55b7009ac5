// local_host.hpp — what the tests and the benchmark ask of this host about the
// processes and ports they use (agentbus_testing: the product never links it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace agentbus::testing {

// resident_kib returns VmRSS of `pid` in KiB (/proc/<pid>/status), or nullopt when
// the process is gone or unreadable.
std::optional<std::uint64_t> resident_kib(pid_t pid);

// free_loopback_port returns a TCP port on 127.0.0.1 that nothing listens on now (the
// kernel's choice, released again: a later bind may race another process, which the
// callers accept). Throws std::runtime_error when no socket can be had.
int free_loopback_port();

}  // namespace agentbus::testing
