// library.cpp — library_version and set_log_level (agentbus/library.hpp).
#include "agentbus/library.hpp"

#include <spdlog/spdlog.h>

#include <string>

namespace agentbus {

std::string_view library_version() noexcept { return AGENTBUS_VERSION; }

bool set_log_level(std::string_view level) {
  // spdlog::level::from_str maps every unknown name to "off": look the name up
  // instead, so that a typo is refused rather than silencing the library.
  for (int l = spdlog::level::trace; l < spdlog::level::n_levels; ++l) {
    auto lvl = static_cast<spdlog::level::level_enum>(l);
    auto name = spdlog::level::to_string_view(lvl);
    if (std::string_view(name.data(), name.size()) == level ||
        (level == "warn" && lvl == spdlog::level::warn)) {
      spdlog::set_level(lvl);
      return true;
    }
  }
  return false;
}

}  // namespace agentbus
