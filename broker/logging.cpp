#include "logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace agentbus::broker {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// The fields of this thread's open log_scopes, outermost first.
thread_local std::vector<log_scope::field> t_fields;

void append(spdlog::memory_buf_t& dest, std::string_view s) { dest.append(s.data(), s.data() + s.size()); }

// level_name uses the names of the config file ("warn", not spdlog's "warning").
std::string_view level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

// utf8_length returns the length of the well-formed UTF-8 sequence at s[0], or 0
// (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_length(std::string_view s) {
  auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (s.size() < 3 || !cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (s.size() < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;
    return 4;
  }
  return 0;
}

// append_json_string writes s as the body of a JSON string (RFC 8259 section 7).
void append_json_string(spdlog::memory_buf_t& dest, std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': append(dest, "\\\""); ++i; continue;
      case '\\': append(dest, "\\\\"); ++i; continue;
      case '\n': append(dest, "\\n"); ++i; continue;
      case '\r': append(dest, "\\r"); ++i; continue;
      case '\t': append(dest, "\\t"); ++i; continue;
      case '\b': append(dest, "\\b"); ++i; continue;
      case '\f': append(dest, "\\f"); ++i; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7f) {  // DEL is legal JSON, but no terminal should get it raw
      const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      dest.append(esc, esc + sizeof esc);
      ++i;
      continue;
    }
    const std::size_t n = utf8_length(s.substr(i));
    if (n == 0) {
      append(dest, "\xEF\xBF\xBD");  // U+FFFD: a collector would reject the whole line
      ++i;
    } else {
      dest.append(s.data() + i, s.data() + i + n);
      i += n;
    }
  }
}

// escaped_payload_flag (%*) is spdlog's %v with control characters written as
// \n, \r, \t or \xNN, so that one record stays one line.
class escaped_payload_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char ch : msg.payload) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c >= 0x20 && c != 0x7f) {
        dest.push_back(ch);
      } else if (ch == '\n') {
        append(dest, "\\n");
      } else if (ch == '\r') {
        append(dest, "\\r");
      } else if (ch == '\t') {
        append(dest, "\\t");
      } else {
        const char esc[] = {'\\', 'x', kHex[c >> 4], kHex[c & 0xf]};
        dest.append(esc, esc + sizeof esc);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<escaped_payload_flag>(); }
};

spdlog::level::level_enum parse_level(const std::string& level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "info") return spdlog::level::info;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  throw std::invalid_argument("unknown log level '" + level + "' (trace, debug, info, warn, error)");
}

}  // namespace

log_scope::log_scope(std::initializer_list<field> fields) : added_(0) {
  for (const auto& f : fields) {
    if (f.second.empty()) continue;  // nothing to say: no key
    t_fields.push_back(f);
    ++added_;
  }
}

log_scope::~log_scope() { t_fields.resize(t_fields.size() - added_); }

void json_log_formatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  using namespace std::chrono;
  const auto since_epoch = msg.time.time_since_epoch();
  const auto secs = floor<seconds>(since_epoch);
  const auto micros = duration_cast<microseconds>(since_epoch - secs).count();
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[64];
  const int n = std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros));

  append(dest, "{\"ts\":\"");
  if (n > 0) dest.append(ts, ts + std::min<std::size_t>(static_cast<std::size_t>(n), sizeof ts - 1));
  append(dest, "\",\"level\":\"");
  append(dest, level_name(msg.level));
  append(dest, "\",\"logger\":\"");
  append_json_string(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
  append(dest, "\",\"msg\":\"");
  append_json_string(dest, std::string_view(msg.payload.data(), msg.payload.size()));
  append(dest, "\"");
  // Innermost first, each key once (an inner scope overrides an outer one); never
  // one of the keys above.
  for (std::size_t i = t_fields.size(); i-- > 0;) {
    const std::string_view key = t_fields[i].first;
    if (key == "ts" || key == "level" || key == "logger" || key == "msg") continue;
    bool shadowed = false;
    for (std::size_t j = i + 1; j < t_fields.size() && !shadowed; ++j) shadowed = t_fields[j].first == key;
    if (shadowed) continue;
    append(dest, ",\"");
    append_json_string(dest, key);
    append(dest, "\":\"");
    append_json_string(dest, t_fields[i].second);
    append(dest, "\"");
  }
  append(dest, "}\n");
}

std::unique_ptr<spdlog::formatter> json_log_formatter::clone() const { return std::make_unique<json_log_formatter>(); }

std::unique_ptr<spdlog::formatter> make_text_log_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<escaped_payload_flag>('*').set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] [%n] %*");
  return f;
}

void setup_logging(const std::string& format, const std::string& level, const std::string& logger_name) {
  // Validate everything first: a bad argument leaves the current logging untouched.
  const spdlog::level::level_enum lvl = parse_level(level);
  std::unique_ptr<spdlog::formatter> formatter;
  if (format == "text") {
    formatter = make_text_log_formatter();
  } else if (format == "json") {
    formatter = std::make_unique<json_log_formatter>();
  } else {
    throw std::invalid_argument("unknown log format '" + format + "' (text, json)");
  }

  // The colour sink colours only when stderr is a terminal: the journal gets plain text.
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::automatic);
  sink->set_formatter(std::move(formatter));
  auto logger = std::make_shared<spdlog::logger>(logger_name, std::move(sink));
  logger->set_level(lvl);
  // Warnings and errors reach the journal even if the process dies right after.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));  // replaces a logger of the same name
  spdlog::set_level(lvl);
}

}  // namespace agentbus::broker
