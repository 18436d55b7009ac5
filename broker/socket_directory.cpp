#include "socket_directory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace agentbus::broker {

std::optional<std::string> socket_directory_problem(const std::filesystem::path& dir, unsigned owner_uid) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return "cannot be examined: " + std::string(std::strerror(errno));
  if (S_ISLNK(st.st_mode)) return "is a symbolic link";
  if (!S_ISDIR(st.st_mode)) return "is not a directory";
  if (st.st_uid != owner_uid)
    return "is owned by uid " + std::to_string(st.st_uid) + ", not by the broker's user (uid " + std::to_string(owner_uid) + ")";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return "is writable by its group or by others";
  return std::nullopt;
}

void prepare_ipc_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) != 0) return;
  const std::filesystem::path dir = std::filesystem::path(endpoint.substr(6)).parent_path();
  if (dir.empty()) throw std::runtime_error("ipc endpoint " + endpoint + ": the socket needs an absolute path");
  // Parents as usual; the socket's own directory is ours alone (mkdir does not follow
  // or replace what another user put there first: EEXIST, then examined below).
  if (dir.has_parent_path()) std::filesystem::create_directories(dir.parent_path());
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create the socket directory " + dir.string() + ": " + std::strerror(errno));
  if (auto problem = socket_directory_problem(dir, ::geteuid()))
    throw std::runtime_error("refusing the socket directory " + dir.string() + " of " + endpoint + ": it " + *problem +
                             " (whoever controls it can replace the socket; use a directory only the broker's user "
                             "writes, such as the systemd unit's /run/agentbus)");
}

}  // namespace agentbus::broker
