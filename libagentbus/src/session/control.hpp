// control.hpp — the typed control messages of the hop (internal; schemas/protocol.md
// §5 is normative).
//
// On the wire every control message is the generic body of handshake.hpp's ctrl_msg
// (fixarray 5: seq, op, strings, blob, number). Here each operation is its own type
// with named fields, and its codec checks exactly what that operation carries: the
// number of strings, whether a blob or a number may be present and what they mean.
// Neither end reads a positional field or a magic number of the generic body.
//
// Decoding takes the verified body of a CTRL frame (its MAC checked first); a body
// that is not one of the known operations, or one with the wrong shape, is
// invalid_field. All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::session::control {

// ---- agent → broker
// subscribe: `group` empty, every subscriber of a topic gets each envelope; a queue
// group (op queue_subscribe), one member of the group gets each (protocol.md §7).
struct subscribe {
  std::string topic;
  std::string group;
};
struct unsubscribe { std::string topic; };
// peer_lookup asks for an enrolled agent's role and identity key.
struct peer_lookup { std::string name; };
// watch_members asks for a topic's online subscribers, and for every change of them.
struct watch_members { std::string topic; };
struct stats_request {};
struct ping {};
struct bye {};

using request = std::variant<subscribe, unsubscribe, peer_lookup, watch_members, stats_request, ping, bye>;

// ---- broker → agent
// subscribed answers a subscribe: ok, or why the broker refused it.
struct subscribed {
  std::string topic;
  status outcome;
};
enum class peer_state : std::uint8_t { known = 0, unknown = 1, revoked = 2 };
// peer_answer answers a peer_lookup. Only a known peer carries the fields after `state`.
struct peer_answer {
  std::string name;
  peer_state state = peer_state::unknown;
  std::string role, suite;
  protection key_protection = protection::tpm;
  std::string tpm_manufacturer;
  bool tpm_simulator = false;
  bytes identity_der;
  bytes evidence;            // the TPM evidence the peer enrolled with (protocol.md §3.9), or empty
};
struct members {
  std::string topic;
  std::vector<std::string> subscribers;
};
// nack: an envelope (message_id, empty when it did not decode) or a control message
// was refused or could not be delivered to `recipient` (an agent, a topic or empty).
struct nack {
  status reason;
  std::string recipient;
  bytes message_id;
};
// revoked: an operator revoked this agent; sessions with it end now.
struct revoked { std::string name; };
// key_changed: this agent enrolled with another key (authorised by a token, the
// policy or an operator's approval): forget its pinned key and sessions, and look it
// up again before the next envelope from or to it.
struct key_changed { std::string name; };
struct stats_answer { std::string json; };

using answer = std::variant<subscribed, peer_answer, members, nack, revoked, key_changed, stats_answer>;

// op_name is the wire name of an operation ("subscribe", "nack", ...), for metrics
// labels and logs: a fixed set, never text from the peer.
std::string_view op_name(const request& r) noexcept;
std::string_view op_name(const answer& a) noexcept;

// encode renders a message as a control body with sequence number `seq`.
bytes encode(std::uint64_t seq, const request& r);
bytes encode(std::uint64_t seq, const answer& a);

template <typename T>
struct sequenced {
  std::uint64_t seq = 0;
  T message;
};
// decode_request / decode_answer parse a verified control body strictly: the generic
// layout (handshake.hpp's decoder and its limits), then the operation's own shape.
result<sequenced<request>> decode_request(byte_view body);
result<sequenced<answer>> decode_answer(byte_view body);

}  // namespace agentbus::session::control
