// socket_directory.hpp — the directory of an ipc:// endpoint, made safe to bind in.
//
// Whoever controls the directory of a Unix socket can replace the socket file: put
// their own listener where agents and operators connect, or remove the broker's. A
// directory someone else created first (/tmp/agentbus by another local user) or that
// others may write is therefore refused (issue 12, case 9); a missing one is created
// 0750 (the group may connect, as the systemd unit's RuntimeDirectoryMode).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace agentbus::broker {

// socket_directory_problem says why `dir` must not hold the broker's sockets: not a
// directory (a symlink is refused, not followed), owned by another user than
// `owner_uid`, or writable by group or others. nullopt: it is safe.
std::optional<std::string> socket_directory_problem(const std::filesystem::path& dir, unsigned owner_uid);

// prepare_ipc_endpoint: for an ipc:// endpoint, creates its directory (0750) when
// missing and throws std::runtime_error when socket_directory_problem finds one for
// the broker's effective user. Other transports: nothing.
void prepare_ipc_endpoint(const std::string& endpoint);

}  // namespace agentbus::broker
