// fingerprint.cpp — parse_fingerprint (agentbus/fingerprint.hpp).
#include "agentbus/fingerprint.hpp"

#include <cctype>

namespace agentbus {

std::optional<std::string> parse_fingerprint(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (text.size() == kPrefix.size() + 64) {
    for (std::size_t i = 0; i < kPrefix.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(text[i])) != kPrefix[i]) return std::nullopt;
    text.remove_prefix(kPrefix.size());
  }
  if (text.size() != 64) return std::nullopt;
  std::string out(text);
  for (char& c : out) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace agentbus
