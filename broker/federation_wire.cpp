#include "federation_wire.hpp"

#include <algorithm>

#include <msgpack.hpp>

#include "session/wire_codec.hpp"

namespace agentbus::broker::federation_wire {
namespace {

using session::wire_codec::reader;
using session::wire_codec::writer;

constexpr std::size_t kMaxName = 128;
constexpr std::size_t kMaxDetail = 512;
constexpr std::size_t kMaxKeyDer = 2048;
constexpr std::size_t kMaxEvidence = 16u << 10;
constexpr std::size_t kMaxSignature = 1024;

status check_version(std::uint64_t v, const char* what) {
  if (v != kVersion) return {status_code::unsupported_version, std::string(what) + " version " + std::to_string(v)};
  return {};
}

// open_list reads the head both list messages share, fixarray(3) [version, a name, an
// array], after scanning `in` as one canonical object within `lim`; `c` is left at the
// array's first element.
status open_list(byte_view in, const envelope_wire::scan_limits& lim, const char* what, envelope_wire::cursor& c,
                 std::string_view& name, std::size_t& count) {
  if (status st = envelope_wire::scan_object(in, lim); !st) return status(st.code(), std::string(what) + ": " + st.detail());
  std::size_t n = 0;
  std::uint64_t version = 0;
  if (status st = c.read_array(what, n); !st) return st;
  if (n != 3) return status{status_code::malformed, std::string(what) + ": 3 fields expected"};
  if (status st = c.read_uint("version", version); !st) return st;
  if (status st = check_version(version, what); !st) return st;
  if (status st = c.read_str("name", name); !st) return st;
  return c.read_array("list", count);
}

std::string joined(std::string_view prefix, std::string_view broker, std::string_view rest) {
  std::string s;
  s.reserve(prefix.size() + broker.size() + rest.size() + 4);
  s.append(prefix).append(".b.").append(escape_token(broker)).append(rest);
  return s;
}

}  // namespace

std::string escape_token(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '.') out += "%2E";
    else out += c;
  }
  return out;
}

std::string inbox(std::string_view prefix, std::string_view broker) { return joined(prefix, broker, ".>"); }

std::string agent_subject(std::string_view prefix, std::string_view to, std::string_view from, std::string_view agent) {
  return joined(prefix, to, ".a.") + escape_token(from) + "." + escape_token(agent);
}

std::string topic_subject(std::string_view prefix, std::string_view to, std::string_view from, std::string_view topic) {
  std::string s = joined(prefix, to, ".t.") + escape_token(from);
  std::size_t i = 0;
  while (i <= topic.size()) {
    const std::size_t slash = std::min(topic.find('/', i), topic.size());
    s += '.';
    s += escape_token(topic.substr(i, slash - i));
    i = slash + 1;
  }
  return s;
}

std::string nack_subject(std::string_view prefix, std::string_view to, std::string_view from) {
  return joined(prefix, to, ".n.") + escape_token(from);
}
std::string receipt_subject(std::string_view prefix, std::string_view to, std::string_view from) {
  return joined(prefix, to, ".r.") + escape_token(from);
}

std::vector<std::string> publish_permissions(std::string_view prefix, std::string_view broker) {
  const std::string p(prefix), b = escape_token(broker);
  return {p + ".b.*.a." + b + ".>", p + ".b.*.t." + b + ".>", p + ".b.*.n." + b, p + ".b.*.r." + b};
}

std::vector<std::string> subscribe_permissions(std::string_view prefix, std::string_view broker) {
  return {inbox(prefix, broker)};
}

inbox_address classify(std::string_view prefix, std::string_view broker, std::string_view subject) {
  inbox_address out;
  const std::string head = joined(prefix, broker, ".");
  if (!subject.starts_with(head)) return out;
  const std::string_view rest = subject.substr(head.size());
  if (rest.size() < 3 || rest[1] != '.') return out;
  const char kind = rest[0];
  const std::string_view after = rest.substr(2);
  const std::size_t dot = after.find('.');
  const std::string_view from = after.substr(0, dot);
  if (from.empty()) return out;
  const bool more = dot != std::string_view::npos && dot + 1 < after.size();
  if ((kind == 'a' || kind == 't') && more) out.kind = kind == 'a' ? inbox_kind::agent : inbox_kind::topic;
  else if ((kind == 'n' || kind == 'r') && dot == std::string_view::npos) out.kind = kind == 'n' ? inbox_kind::nack : inbox_kind::receipt;
  else return out;
  out.from.assign(from);
  if (out.kind == inbox_kind::agent) {
    const std::string_view name = after.substr(dot + 1);
    for (std::size_t i = 0; i < name.size(); ++i) {
      if (name.compare(i, 3, "%2E") == 0) {
        out.agent += '.';
        i += 2;
      } else {
        out.agent += name[i];
      }
    }
  }
  return out;
}

namespace {
// bytes_sink lets msgpack's packer append to a bytes vector.
struct bytes_sink {
  bytes& out;
  void write(const char* p, std::size_t n) { out.insert(out.end(), p, p + n); }
};
}  // namespace

void forwarded_writer::add(std::uint64_t seq, byte_view signed_part, byte_view auth_part,
                           const std::vector<std::string>& picks) {
  bytes_sink sink{body_};
  msgpack::packer<bytes_sink> pk(sink);
  pk.pack_array(4);
  pk.pack(seq);
  pk.pack_bin(static_cast<std::uint32_t>(signed_part.size()));
  pk.pack_bin_body(reinterpret_cast<const char*>(signed_part.data()), static_cast<std::uint32_t>(signed_part.size()));
  pk.pack_bin(static_cast<std::uint32_t>(auth_part.size()));
  pk.pack_bin_body(reinterpret_cast<const char*>(auth_part.data()), static_cast<std::uint32_t>(auth_part.size()));
  pk.pack_array(static_cast<std::uint32_t>(picks.size()));
  for (const auto& p : picks) pk.pack(p);
  ++count_;
}

bytes forwarded_writer::finish() const {
  bytes out;
  out.reserve(body_.size() + origin_.size() + 16);
  bytes_sink sink{out};
  msgpack::packer<bytes_sink> pk(sink);
  pk.pack_array(3);
  pk.pack(kVersion);
  pk.pack(origin_);
  pk.pack_array(static_cast<std::uint32_t>(count_));
  out.insert(out.end(), body_.begin(), body_.end());
  return out;
}

result<forwarded> decode_forwarded(byte_view in, std::size_t max_frame_bytes) {
  // One canonical object within these limits first, then read in order.
  if (in.size() > kMaxForwardedBytes) return status{status_code::too_large, "forwarded envelopes: message too large"};
  envelope_wire::scan_limits lim;
  lim.max_str = kMaxName;
  lim.max_bin = max_frame_bytes;
  lim.max_array = std::max(kMaxForwardedItems, kMaxPicks);
  lim.max_map = 0;
  lim.max_depth = 4;
  envelope_wire::cursor c(in);
  forwarded m;
  std::size_t items = 0;
  std::string_view origin;
  if (status st = open_list(in, lim, "forwarded envelopes", c, origin, items); !st) return st;
  if (items == 0 || items > kMaxForwardedItems) return status{status_code::invalid_field, "forwarded envelopes: 1..256 items"};
  m.origin.assign(origin);
  m.items.reserve(items);
  for (std::size_t i = 0; i < items; ++i) {
    forwarded_item item;
    std::size_t four = 0, picks = 0;
    if (status st = c.read_array("item", four); !st) return st;
    if (four != 4) return status{status_code::malformed, "forwarded envelope: 4 fields expected"};
    if (status st = c.read_uint("seq", item.seq); !st) return st;
    if (status st = c.read_bin("signed part", item.signed_part); !st) return st;
    if (status st = c.read_bin("auth part", item.auth_part); !st) return st;
    if (item.signed_part.empty() || item.auth_part.empty() ||
        item.signed_part.size() + item.auth_part.size() > max_frame_bytes)
      return status{status_code::too_large, "forwarded envelope: empty, or over max_frame_bytes"};
    if (status st = c.read_array("picks", picks); !st) return st;
    if (picks > kMaxPicks) return status{status_code::too_large, "forwarded envelope: too many picks"};
    for (std::size_t k = 0; k < picks; ++k) {
      std::string_view p;
      if (status st = c.read_str("pick", p); !st) return st;
      item.picks.emplace_back(p);
    }
    m.items.push_back(std::move(item));
  }
  return m;
}

bytes encode(const receipt& r) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(3);
  pk.pack(kVersion);
  pk.pack(r.from);
  pk.pack_array(static_cast<std::uint32_t>(r.ranges.size()));
  for (const auto& [first, last] : r.ranges) {
    pk.pack_array(2);
    pk.pack(first);
    pk.pack(last);
  }
  return bytes(buf.data(), buf.data() + buf.size());
}

result<receipt> decode_receipt(byte_view in) {
  // Scanned first (one canonical object within these limits), then read in order.
  envelope_wire::scan_limits lim;
  lim.max_str = kMaxName;
  lim.max_bin = 0;
  lim.max_array = kMaxReceiptRanges;
  lim.max_map = 0;
  lim.max_depth = 3;
  if (in.size() > 64u << 10) return status{status_code::too_large, "receipt too large"};
  envelope_wire::cursor c(in);
  receipt r;
  std::size_t ranges = 0;
  std::string_view from;
  if (status st = open_list(in, lim, "receipt", c, from, ranges); !st) return st;
  r.from.assign(from);
  for (std::size_t i = 0; i < ranges; ++i) {
    std::size_t two = 0;
    std::uint64_t first = 0, last = 0;
    if (status st = c.read_array("range", two); !st) return st;
    if (two != 2) return status{status_code::malformed, "receipt: a range is [first, last]"};
    if (status st = c.read_uint("first", first); !st) return st;
    if (status st = c.read_uint("last", last); !st) return st;
    if (last < first || last - first > 1'000'000) return status{status_code::invalid_field, "receipt: range out of order or too long"};
    r.ranges.emplace_back(first, last);
  }
  return r;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_of(std::vector<std::uint64_t>& seqs) {
  std::sort(seqs.begin(), seqs.end());
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (std::uint64_t s : seqs) {
    if (!out.empty() && (s == out.back().second || s == out.back().second + 1)) out.back().second = s;
    else out.emplace_back(s, s);
  }
  return out;
}

bytes encode(const relayed_nack& m) {
  return writer(7).uint(kVersion).str(m.origin).str(m.sender).bin(m.message_id).uint(m.code).str(m.detail)
      .str(m.recipient).done();
}

result<relayed_nack> decode_relayed_nack(byte_view in) {
  relayed_nack m;
  std::uint64_t version = 0;
  reader r(in, "relayed nack", 7, 4096);
  r.uint("version", version).str("origin", m.origin, kMaxName).str("sender", m.sender, kMaxName)
      .bin("message id", m.message_id, 0, 64).uint("code", m.code).str("detail", m.detail, kMaxDetail)
      .str("recipient", m.recipient, kMaxName);
  if (!r.ok()) return r.error();
  if (status st = check_version(version, "relayed nack"); !st) return st;
  if (m.code == 0 || m.code > 0xffff) return status{status_code::invalid_field, "relayed nack without a refusal code"};
  return m;
}

std::string agent_key(std::string_view agent) { return "a." + std::string(agent); }
std::string broker_key(std::string_view broker) { return "b." + std::string(broker); }
std::string revocation_key(std::string_view agent) { return "r." + std::string(agent); }

bytes encode_body(const agent_record& a) {
  std::vector<std::string> groups;
  for (const auto& [topic, group] : a.queue_groups) {
    groups.push_back(topic);
    groups.push_back(group);
  }
  return writer(15).uint(kVersion).str("agent").str(a.writer).uint(a.written_ms).str(a.name).str(a.role).str(a.suite)
      .str(protection_name(a.key_protection)).str(a.tpm_manufacturer).uint(a.tpm_simulator ? 1 : 0).bin(a.identity_der)
      .bin(a.evidence).uint(a.online ? 1 : 0).strings(a.subscriptions).strings(groups).done();
}

bytes encode_body(const broker_record& b) {
  return writer(6).uint(kVersion).str("broker").str(b.writer).uint(b.written_ms).str(b.suite).bin(b.identity_der).done();
}

bytes encode_body(const revocation_record& v) {
  return writer(7).uint(kVersion).str("revoked").str(v.writer).uint(v.written_ms).str(v.name).str(v.fingerprint)
      .str(v.reason).done();
}

bytes signing_input(byte_view body) {
  static constexpr std::string_view kLabel = "agentbus-v1 directory";
  bytes in(kLabel.begin(), kLabel.end());
  in.push_back(0);
  in.insert(in.end(), body.begin(), body.end());
  return in;
}

bytes seal(byte_view body, byte_view signature) { return writer(2).bin(body).bin(signature).done(); }

result<opened_record> open_record(byte_view value) {
  opened_record o;
  reader outer(value, "directory record", 2, kMaxRecordBytes);
  outer.bin("body", o.body, 1, kMaxRecordBytes).bin("signature", o.signature, 1, kMaxSignature);
  if (!outer.ok()) return outer.error();
  // The kind and writer are the body's fields 1 and 2, whatever follows.
  std::uint64_t version = 0;
  envelope_wire::cursor c(o.body);
  std::size_t n = 0;
  std::string_view kind, writer_name;
  if (status st = c.read_array("record", n); !st) return st;
  if (n < 3) return status{status_code::malformed, "directory record body too short"};
  if (status st = c.read_uint("version", version); !st) return st;
  if (status st = check_version(version, "directory record"); !st) return st;
  if (status st = c.read_str("kind", kind); !st) return st;
  if (status st = c.read_str("writer", writer_name); !st) return st;
  if (kind != "agent" && kind != "broker" && kind != "revoked")
    return status{status_code::invalid_field, "unknown directory record kind"};
  if (writer_name.empty() || writer_name.size() > kMaxName) return status{status_code::invalid_field, "directory record writer"};
  o.kind.assign(kind);
  o.writer.assign(writer_name);
  return o;
}

result<agent_record> decode_agent(byte_view body) {
  agent_record a;
  std::uint64_t version = 0, simulator = 0, online = 0;
  std::string kind, prot;
  std::vector<std::string> groups;
  reader r(body, "agent record", 15, kMaxRecordBytes, 2 * kMaxSubscriptionsInRecord);
  r.uint("version", version).str("kind", kind, 16).str("writer", a.writer, kMaxName).uint("written_ms", a.written_ms)
      .str("name", a.name, kMaxName).str("role", a.role, kMaxName).str("suite", a.suite, kMaxName)
      .str("protection", prot, 16).str("tpm_manufacturer", a.tpm_manufacturer, 64).uint("simulator", simulator)
      .bin("identity key", a.identity_der, 1, kMaxKeyDer).bin("evidence", a.evidence, 0, kMaxEvidence)
      .uint("online", online).strings("subscriptions", a.subscriptions, kMaxSubscriptionsInRecord, 128)
      .strings("queue groups", groups, 2 * kMaxSubscriptionsInRecord, 128);
  if (!r.ok()) return r.error();
  if (status st = check_version(version, "agent record"); !st) return st;
  const auto p = parse_protection(prot);
  if (kind != "agent" || !p || simulator > 1 || online > 1 || a.name.empty())
    return status{status_code::invalid_field, "agent record fields"};
  if (groups.size() % 2 != 0) return status{status_code::invalid_field, "agent record queue groups: pairs expected"};
  for (std::size_t i = 0; i < groups.size(); i += 2) a.queue_groups.emplace_back(groups[i], groups[i + 1]);
  a.key_protection = *p;
  a.tpm_simulator = simulator == 1;
  a.online = online == 1;
  return a;
}

result<broker_record> decode_broker(byte_view body) {
  broker_record b;
  std::uint64_t version = 0;
  std::string kind;
  reader r(body, "broker record", 6, kMaxRecordBytes);
  r.uint("version", version).str("kind", kind, 16).str("writer", b.writer, kMaxName).uint("written_ms", b.written_ms)
      .str("suite", b.suite, kMaxName).bin("identity key", b.identity_der, 1, kMaxKeyDer);
  if (!r.ok()) return r.error();
  if (status st = check_version(version, "broker record"); !st) return st;
  if (kind != "broker") return status{status_code::invalid_field, "broker record kind"};
  return b;
}

result<revocation_record> decode_revocation(byte_view body) {
  revocation_record v;
  std::uint64_t version = 0;
  std::string kind;
  reader r(body, "revocation record", 7, kMaxRecordBytes);
  r.uint("version", version).str("kind", kind, 16).str("writer", v.writer, kMaxName).uint("written_ms", v.written_ms)
      .str("name", v.name, kMaxName).str("fingerprint", v.fingerprint, 128).str("reason", v.reason, kMaxDetail);
  if (!r.ok()) return r.error();
  if (status st = check_version(version, "revocation record"); !st) return st;
  if (kind != "revoked" || v.name.empty()) return status{status_code::invalid_field, "revocation record fields"};
  return v;
}

status verify_record(const opened_record& r, const crypto::public_key& writer_key, const suite& s) {
  const bytes input = signing_input(r.body);
  return crypto::verify_digest(writer_key, s.key, s.envelope_hash, crypto::digest(s.envelope_hash, input), r.signature);
}

}  // namespace agentbus::broker::federation_wire
