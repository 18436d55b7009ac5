// logging.hpp — the broker's log setup: spdlog to stderr (systemd puts it in the
// journal), as text for people or as one JSON object per line for collectors.
//
// Both formats keep one record on one line: log messages quote names and reasons
// that came from the network, and a newline in an agent name must not be able to
// forge a second record.
#pragma once

#include <spdlog/formatter.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace agentbus::broker {

// setup_logging makes a logger named `logger_name` that writes to stderr the
// default spdlog logger, at `level` (trace, debug, info, warn, error). `format`:
//   "text": "[2024-05-01 12:00:00.123] [info] [broker] message"; control characters
//           in the message are written as \n, \t, \xNN. Colours only on a terminal.
//   "json": {"ts":"2024-05-01T12:00:00.123456Z","level":"info","logger":"broker","msg":"..."}
// Throws std::invalid_argument on an unknown format or level, before changing
// anything. Call it once at start-up, before other threads log (spdlog's default
// logger swap is not meant to race with logging).
void setup_logging(const std::string& format, const std::string& level, const std::string& logger_name);

// log_scope adds structured fields to every record this thread logs while it lives
// (the JSON format writes them as top-level keys after "msg"; the text format, whose
// messages already say the same in words, leaves them out). Scopes nest: an inner
// field of the same key wins. The keys in use: agent, role, peer (the connection's
// address), code (a status code name), reason, message_id (hex), recipient, topic,
// operation. Values are what the broker would print anyway: never key material.
// Costs a vector push and pop per scope; the event loop opens one per message.
class log_scope {
 public:
  using field = std::pair<std::string_view, std::string>;
  log_scope(std::initializer_list<field> fields);
  ~log_scope();
  log_scope(const log_scope&) = delete;
  log_scope& operator=(const log_scope&) = delete;

 private:
  std::size_t added_;
};

// json_log_formatter writes each record as one JSON object and a newline: "ts" (UTC,
// RFC 3339, microseconds), "level" (trace, debug, info, warn, error, critical),
// "logger", "msg" and the fields of the thread's open log_scopes. Strings are JSON-escaped (quotes, backslashes, every control
// character) and invalid UTF-8 is replaced by U+FFFD, so every line parses.
class json_log_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// make_text_log_formatter returns the "text" format's formatter (a pattern formatter
// whose message flag escapes control characters).
std::unique_ptr<spdlog::formatter> make_text_log_formatter();

}  // namespace agentbus::broker
