// federation_wire.hpp — what brokers of a federation say to each other over NATS
// (schemas/federation.md is normative): subject names, the forwarded envelope, the
// relayed nack, and the signed directory records of the JetStream key-value bucket.
//
// Pure encoding and checking: no sockets, no NATS, so every rule here runs in a
// unit test. Decoders are strict (one canonical object within limits, exact field
// counts), as for everything else from the network: a NATS message is hostile until
// the envelope's own signature or the record's broker signature says otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::broker::federation_wire {

inline constexpr std::uint64_t kVersion = 1;
inline constexpr std::size_t kMaxSubscriptionsInRecord = 256;  // max_subscriptions_per_agent's default
inline constexpr std::size_t kMaxRecordBytes = 64u << 10;

// ---- Subjects (schemas/federation.md §2) --------------------------------------
// Every subject names the broker it is for and the broker it is from:
// "<prefix>.b.<to>.<kind>.<from>[...]". NATS permissions let a broker subscribe to
// "<prefix>.b.<itself>.>" only, and publish only subjects whose <from> is itself,
// so the subject's <from> is authenticated by NATS. Tokens of agent names and topic
// segments escape '.' (a NATS token separator) as "%2E"; '%' is in neither alphabet,
// so the mapping is one to one.
std::string escape_token(std::string_view s);
// inbox: every subject addressed to `broker`: "<prefix>.b.<broker>.>"
std::string inbox(std::string_view prefix, std::string_view broker);
// agent_subject: a direct envelope from broker `from` for `agent`, homed at `to`:
// "<prefix>.b.<to>.a.<from>.<agent>".
std::string agent_subject(std::string_view prefix, std::string_view to, std::string_view from, std::string_view agent);
// topic_subject: a topic envelope from `from` for `to`'s subscribers of the concrete
// `topic` ("a/b.c" → "<prefix>.b.<to>.t.<from>.a.b%2Ec").
std::string topic_subject(std::string_view prefix, std::string_view to, std::string_view from, std::string_view topic);
// nack_subject: refusals, from `from`, of envelopes whose senders live at `to`.
std::string nack_subject(std::string_view prefix, std::string_view to, std::string_view from);
// receipt_subject: receipts, from `from`, for envelopes `to` forwarded.
std::string receipt_subject(std::string_view prefix, std::string_view to, std::string_view from);
// publish_permissions / subscribe_permissions: what nats-server's authorization
// should allow `broker` (besides the directory bucket's JetStream subjects).
std::vector<std::string> publish_permissions(std::string_view prefix, std::string_view broker);
std::vector<std::string> subscribe_permissions(std::string_view prefix, std::string_view broker);

enum class inbox_kind { agent, topic, nack, receipt, other };
struct inbox_address {
  inbox_kind kind = inbox_kind::other;
  std::string from;   // the sending broker, as the subject names it
  std::string agent;  // agent subjects: the recipient (unescaped)
};
// classify tells which of the above `subject` (one of `broker`'s inbox) is, and from
// whom.
inbox_address classify(std::string_view prefix, std::string_view broker, std::string_view subject);

// ---- Forwarded envelopes: fixarray(3) [version, origin broker, items], items an
// array of 1..256 fixarray(4) [seq, signed part, auth part, picks]. The envelopes a
// broker forwards on one subject within one event-loop turn travel together (at most
// kMaxForwardedItems and about kForwardedBatchBytes).
inline constexpr std::size_t kMaxPicks = 256;
inline constexpr std::size_t kMaxForwardedItems = 256;
inline constexpr std::size_t kForwardedBatchBytes = 64u << 10;
inline constexpr std::size_t kMaxForwardedBytes = 4u << 20;  // a message (nats-server's max_payload must allow it)
struct forwarded_item {
  std::uint64_t seq = 0;  // the origin's number for it towards this broker (receipts name it)
  byte_view signed_part;  // the envelope's signed part, byte for byte
  byte_view auth_part;    // as the sender sent it; its hop MAC, if any, means nothing past the first hop
  // Topic envelopes: the receiving broker's agents picked as queue group members
  // (besides its plain subscribers, who get it anyway). Empty for direct envelopes.
  std::vector<std::string> picks;
};
// forwarded: views into the decoded message, valid while it lives.
struct forwarded {
  std::string origin;  // the broker that accepted the envelopes from their senders
  std::vector<forwarded_item> items;
};
// forwarded_writer builds one message, item by item.
class forwarded_writer {
 public:
  explicit forwarded_writer(std::string_view origin) : origin_(origin) {}
  void add(std::uint64_t seq, byte_view signed_part, byte_view auth_part, const std::vector<std::string>& picks);
  std::size_t items() const noexcept { return count_; }
  std::size_t bytes_so_far() const noexcept { return body_.size(); }
  bytes finish() const;

 private:
  std::string origin_;
  bytes body_;  // the items, encoded
  std::size_t count_ = 0;
};
result<forwarded> decode_forwarded(byte_view in, std::size_t max_frame_bytes);

// ---- Receipt: fixarray(3) [version, receiving broker, [[first seq, last seq], ...]]
// The receiving broker had these forwarded envelopes in hand (what became of each is
// its own report: delivered, or a relayed nack).
inline constexpr std::size_t kMaxReceiptRanges = 1024;
struct receipt {
  std::string from;  // the broker that received them
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
};
bytes encode(const receipt& r);
result<receipt> decode_receipt(byte_view in);
// ranges_of: sorted, merged inclusive ranges of `seqs` (which it sorts).
std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_of(std::vector<std::uint64_t>& seqs);

// ---- Relayed nack: fixarray(7) [version, origin broker, sender, message id, code, detail, recipient]
struct relayed_nack {
  std::string origin;     // the broker that refused or could not deliver
  std::string sender;     // whose envelope it was (an agent of the receiving broker)
  bytes message_id;
  std::uint64_t code = 0;
  std::string detail, recipient;
};
bytes encode(const relayed_nack& m);
result<relayed_nack> decode_relayed_nack(byte_view in);

// ---- Directory records (schemas/federation.md §3) -----------------------------
// KV keys: "a.<agent>" (agent_record), "b.<broker>" (broker_record), "r.<agent>"
// (revocation). The value is fixarray(2) [body, signature]; the signature is the
// writing broker's identity key over "agentbus-v1 directory" || 0x00 || body, hashed
// with its suite's envelope hash.
std::string agent_key(std::string_view agent);
std::string broker_key(std::string_view broker);
std::string revocation_key(std::string_view agent);

struct agent_record {
  std::string writer;            // the broker that wrote it: the agent's home
  std::uint64_t written_ms = 0;  // the writer's clock (informational)
  std::string name, role, suite;
  protection key_protection = protection::tpm;
  std::string tpm_manufacturer;
  bool tpm_simulator = false;
  bytes identity_der;
  bytes evidence;
  bool online = false;
  std::vector<std::string> subscriptions;  // topics and patterns, as subscribed
  // Of those, the ones in a queue group: subscription → group.
  std::vector<std::pair<std::string, std::string>> queue_groups;
};

struct broker_record {
  std::string writer;  // the broker itself
  std::uint64_t written_ms = 0;
  std::string suite;   // of its identity key
  bytes identity_der;
};

struct revocation_record {
  std::string writer;
  std::uint64_t written_ms = 0;
  std::string name;
  std::string fingerprint;  // the revoked key's, hex ("" when unknown)
  std::string reason;
};

bytes encode_body(const agent_record& r);
bytes encode_body(const broker_record& r);
bytes encode_body(const revocation_record& r);

// signing_input: what the writing broker signs for `body`.
bytes signing_input(byte_view body);
// seal wraps a body and its signature as the KV value.
bytes seal(byte_view body, byte_view signature);

// opened_record: a KV value split, its body's kind read; nothing verified yet.
struct opened_record {
  bytes body, signature;
  std::string kind;    // "agent", "broker", "revoked"
  std::string writer;
};
result<opened_record> open_record(byte_view value);
result<agent_record> decode_agent(byte_view body);
result<broker_record> decode_broker(byte_view body);
result<revocation_record> decode_revocation(byte_view body);

// verify_record checks `r`'s signature under the writer's identity key, of suite `s`.
status verify_record(const opened_record& r, const crypto::public_key& writer_key, const suite& s);

}  // namespace agentbus::broker::federation_wire
