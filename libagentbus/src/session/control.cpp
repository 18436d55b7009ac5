#include "session/control.hpp"

#include "agentbus/envelope.hpp"
#include "session/handshake.hpp"
#include "util/overloaded.hpp"

namespace agentbus::session::control {
namespace {

using util::overloaded;

status wrong_shape(std::string_view op) {
  return {status_code::invalid_field, "control operation '" + std::string(op) + "' with the wrong fields"};
}

// shape: exactly `strings` strings, and no blob / a zero number unless the op uses them.
bool shape(const ctrl_msg& m, std::size_t strings, bool blob_allowed, bool number_allowed) {
  return m.strings.size() == strings && (blob_allowed || m.blob.empty()) && (number_allowed || m.number == 0);
}

ctrl_msg generic(std::uint64_t seq, std::string_view op, std::vector<std::string> strings = {}, bytes blob = {},
                 std::uint64_t number = 0) {
  ctrl_msg m;
  m.seq = seq;
  m.op = std::string(op);
  m.strings = std::move(strings);
  m.blob = std::move(blob);
  m.number = number;
  return m;
}

// The requests and their arguments: every one is a fixed number of strings.
struct request_kind {
  std::string_view op;
  std::size_t strings;
  request (*make)(const std::vector<std::string>& s);
};
constexpr request_kind kRequests[] = {
    {"subscribe", 1, [](const std::vector<std::string>& s) -> request { return subscribe{s[0], {}}; }},
    {"queue_subscribe", 2, [](const std::vector<std::string>& s) -> request { return subscribe{s[0], s[1]}; }},
    {"unsubscribe", 1, [](const std::vector<std::string>& s) -> request { return unsubscribe{s[0]}; }},
    {"peer", 1, [](const std::vector<std::string>& s) -> request { return peer_lookup{s[0]}; }},
    {"members", 1, [](const std::vector<std::string>& s) -> request { return watch_members{s[0]}; }},
    {"stats", 0, [](const std::vector<std::string>&) -> request { return stats_request{}; }},
    {"ping", 0, [](const std::vector<std::string>&) -> request { return ping{}; }},
    {"bye", 0, [](const std::vector<std::string>&) -> request { return bye{}; }},
};

}  // namespace

std::string_view op_name(const request& r) noexcept {
  return std::visit(overloaded{[](const subscribe& s) { return std::string_view(s.group.empty() ? "subscribe" : "queue_subscribe"); },
                               [](const unsubscribe&) { return std::string_view("unsubscribe"); },
                               [](const peer_lookup&) { return std::string_view("peer"); },
                               [](const watch_members&) { return std::string_view("members"); },
                               [](const stats_request&) { return std::string_view("stats"); },
                               [](const ping&) { return std::string_view("ping"); },
                               [](const bye&) { return std::string_view("bye"); }},
                    r);
}

std::string_view op_name(const answer& a) noexcept {
  return std::visit(overloaded{[](const subscribed&) { return std::string_view("subscribed"); },
                               [](const peer_answer&) { return std::string_view("peer"); },
                               [](const members&) { return std::string_view("members"); },
                               [](const nack&) { return std::string_view("nack"); },
                               [](const revoked&) { return std::string_view("revoked"); },
                               [](const key_changed&) { return std::string_view("key_changed"); },
                               [](const stats_answer&) { return std::string_view("stats"); }},
                    a);
}

bytes encode(std::uint64_t seq, const request& r) {
  const std::string_view op = op_name(r);
  return session::encode(std::visit(
      overloaded{[&](const subscribe& m) {
                   return m.group.empty() ? generic(seq, op, {m.topic}) : generic(seq, op, {m.topic, m.group});
                 },
                 [&](const unsubscribe& m) { return generic(seq, op, {m.topic}); },
                 [&](const peer_lookup& m) { return generic(seq, op, {m.name}); },
                 [&](const watch_members& m) { return generic(seq, op, {m.topic}); },
                 [&](const auto&) { return generic(seq, op); }},
      r));
}

bytes encode(std::uint64_t seq, const answer& a) {
  const std::string_view op = op_name(a);
  return session::encode(std::visit(
      overloaded{
          [&](const subscribed& m) {
            return generic(seq, op, {m.topic, m.outcome.detail()}, {}, static_cast<std::uint64_t>(m.outcome.code()));
          },
          [&](const peer_answer& m) {
            switch (m.state) {
              case peer_state::unknown: return generic(seq, op, {m.name}, {}, 1);
              case peer_state::revoked: return generic(seq, op, {m.name, "revoked"}, {}, 2);
              case peer_state::known: break;
            }
            // blob: u16be(len(identity DER)) || identity DER || evidence (protocol.md §5.1).
            bytes blob{static_cast<std::uint8_t>(m.identity_der.size() >> 8), static_cast<std::uint8_t>(m.identity_der.size())};
            blob.insert(blob.end(), m.identity_der.begin(), m.identity_der.end());
            blob.insert(blob.end(), m.evidence.begin(), m.evidence.end());
            return generic(seq, op,
                           {m.name, m.role, m.suite, std::string(protection_name(m.key_protection)), m.tpm_manufacturer,
                            m.tpm_simulator ? "1" : "0"},
                           blob, 0);
          },
          [&](const members& m) {
            std::vector<std::string> strings{m.topic};
            strings.insert(strings.end(), m.subscribers.begin(), m.subscribers.end());
            return generic(seq, op, std::move(strings));
          },
          [&](const nack& m) {
            return generic(seq, op, {std::string(status_code_name(m.reason.code())), m.reason.detail(), m.recipient},
                           m.message_id, static_cast<std::uint64_t>(m.reason.code()));
          },
          [&](const revoked& m) { return generic(seq, op, {m.name}); },
          [&](const key_changed& m) { return generic(seq, op, {m.name}); },
          [&](const stats_answer& m) { return generic(seq, op, {m.json}); }},
      a));
}

result<sequenced<request>> decode_request(byte_view body) {
  auto m = decode_ctrl(body);
  if (!m) return m.error();
  for (const request_kind& k : kRequests) {
    if (m->op != k.op) continue;
    if (!shape(*m, k.strings, false, false)) return wrong_shape(m->op);
    return sequenced<request>{m->seq, k.make(m->strings)};
  }
  return status{status_code::invalid_field, "unknown control operation '" + m->op.substr(0, 32) + "'"};
}

result<sequenced<answer>> decode_answer(byte_view body) {
  auto m = decode_ctrl(body);
  if (!m) return m.error();
  sequenced<answer> out{m->seq, revoked{}};
  const std::string& op = m->op;
  auto& s = m->strings;
  if (op == "subscribed") {
    // number 0: subscribed; otherwise the refusal's code.
    const auto refusal = error_code_from_wire(m->number);
    if (!shape(*m, 2, false, true) || (m->number != 0 && !refusal)) return wrong_shape(op);
    out.message = subscribed{s[0], refusal ? status{*refusal, s[1]} : status{}};
  } else if (op == "peer") {
    peer_answer p;
    if (m->number == 1 && shape(*m, 1, false, true)) {
      p.name = s[0];
      p.state = peer_state::unknown;
    } else if (m->number == 2 && shape(*m, 2, false, true) && s[1] == "revoked") {
      p.name = s[0];
      p.state = peer_state::revoked;
    } else if (m->number == 0 && shape(*m, 6, true, false) && !m->blob.empty() && (s[5] == "0" || s[5] == "1")) {
      auto prot = parse_protection(s[3]);
      if (!prot) return wrong_shape(op);
      const std::size_t der_len = m->blob.size() >= 2 ? (std::size_t{m->blob[0]} << 8 | m->blob[1]) : 0;
      if (der_len == 0 || 2 + der_len > m->blob.size()) return wrong_shape(op);
      p = peer_answer{s[0], peer_state::known, s[1], s[2], *prot, s[4], s[5] == "1",
                      bytes(m->blob.begin() + 2, m->blob.begin() + 2 + static_cast<std::ptrdiff_t>(der_len)),
                      bytes(m->blob.begin() + 2 + static_cast<std::ptrdiff_t>(der_len), m->blob.end())};
    } else {
      return wrong_shape(op);
    }
    out.message = std::move(p);
  } else if (op == "members") {
    if (!shape(*m, s.size(), false, false) || s.empty()) return wrong_shape(op);
    out.message = members{s[0], std::vector<std::string>(s.begin() + 1, s.end())};
  } else if (op == "nack") {
    const auto refusal = error_code_from_wire(m->number);
    if (!shape(*m, 3, true, true) || !refusal || (!m->blob.empty() && m->blob.size() != kMessageIdSize))
      return wrong_shape(op);
    out.message = nack{status{*refusal, s[1]}, s[2], m->blob};
  } else if (op == "revoked") {
    if (!shape(*m, 1, false, false)) return wrong_shape(op);
    out.message = revoked{s[0]};
  } else if (op == "key_changed") {
    if (!shape(*m, 1, false, false)) return wrong_shape(op);
    out.message = key_changed{s[0]};
  } else if (op == "stats") {
    if (!shape(*m, 1, false, false)) return wrong_shape(op);
    out.message = stats_answer{s[0]};
  } else {
    return status{status_code::invalid_field, "unknown control operation '" + op.substr(0, 32) + "'"};
  }
  return out;
}

}  // namespace agentbus::session::control
