#include "agentbus/policy.hpp"

#include "agentbus/fingerprint.hpp"

#include "agentbus/bytes.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <limits>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "policy/policy_default.inc"  // kDefaultPolicyToml, generated from config/policy.toml

namespace agentbus {

namespace {
// How a fingerprint must look (agentbus/fingerprint.hpp), for the policy's errors.
constexpr const char* kFingerprintForm =
    "must be 64 hex digits, optionally after \"sha256:\" (SHA-256 of the DER public key, as agentbus-key prints it)";
}  // namespace
namespace {

// policy_reader validates one TOML document and names the file and field in every
// error. Unknown keys are errors: a typo such as `allow_sofware = true` must not
// silently leave the stricter default in place (or the laxer one).
class policy_reader {
 public:
  explicit policy_reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw policy_error(source_, field, problem);
  }

  void only_keys(const toml::table& t, const std::string& where, std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      (void)v;
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
        fail(join(where, std::string(k.str())), "unknown key");
    }
  }

  static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

  const toml::table& table_at(const toml::table& t, const std::string& where, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) fail(join(where, std::string(key)), "missing table");
    if (!n->is_table()) fail(join(where, std::string(key)), "must be a table");
    return *n->as_table();
  }

  std::string string_at(const toml::table& t, const std::string& where, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) fail(join(where, std::string(key)), "missing");
    if (!n->is_string()) fail(join(where, std::string(key)), "must be a string");
    return std::string(n->as_string()->get());
  }

  std::optional<bool> optional_bool(const toml::table& t, const std::string& where, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_boolean()) fail(join(where, std::string(key)), "must be true or false");
    return n->as_boolean()->get();
  }

  // optional_integer reads an integer in [min, max]; a float, a string or a value
  // out of range is an error (types are strict: "1024" is not 1024).
  std::optional<std::int64_t> optional_integer(const toml::table& t, const std::string& where, std::string_view key,
                                               std::int64_t min, std::int64_t max) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    std::string field = join(where, std::string(key));
    std::string range = std::to_string(min) + " to " + std::to_string(max);
    if (!n->is_integer()) fail(field, "must be an integer from " + range);
    std::int64_t v = n->as_integer()->get();
    if (v < min || v > max) fail(field, "must be from " + range + ", not " + std::to_string(v));
    return v;
  }

  // read_batch_limits overrides `limits` with what the table sets.
  void read_batch_limits(const toml::table& t, const std::string& where, batch_limits& limits) const {
    if (auto v = optional_integer(t, where, "batch_max_leaves", batch_limits::kMinLeaves, batch_limits::kMaxLeaves))
      limits.max_leaves = static_cast<std::uint32_t>(*v);
    if (auto v = optional_integer(t, where, "batch_max_delay_ms", 0, batch_limits::kMaxDelay.count()))
      limits.max_delay = std::chrono::milliseconds(*v);
  }

  std::optional<std::vector<assurance>> optional_assurance(const toml::table& t, const std::string& where) const {
    const toml::node* n = t.get("assurance");
    if (n == nullptr) return std::nullopt;
    std::string field = join(where, "assurance");
    if (!n->is_array()) fail(field, "must be an array of \"tpm\", \"tpm-batch\", \"software\"");
    std::vector<assurance> out;
    for (const toml::node& item : *n->as_array()) {
      if (!item.is_string()) fail(field, "entries must be strings");
      auto a = parse_assurance(item.as_string()->get());
      if (!a) fail(field, "unknown assurance level '" + item.as_string()->get() + "'");
      if (std::find(out.begin(), out.end(), *a) != out.end()) fail(field, "lists '" + item.as_string()->get() + "' twice");
      out.push_back(*a);
    }
    if (out.empty()) fail(field, "must accept at least one level");
    return out;
  }

  std::optional<std::vector<std::string>> optional_strings(const toml::table& t, const std::string& where,
                                                          std::string_view key, bool topics) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    std::string field = join(where, std::string(key));
    if (!n->is_array()) fail(field, "must be an array of strings");
    std::vector<std::string> out;
    for (const toml::node& item : *n->as_array()) {
      if (!item.is_string()) fail(field, "entries must be strings");
      std::string v = item.as_string()->get();
      if (topics && !is_topic_pattern(v)) fail(field, "'" + v + "' is not a topic pattern (a/b/*, a/>)");
      out.push_back(std::move(v));
    }
    return out;
  }


  suite read_suite(const std::string& name, const toml::table& t) const {
    const std::string where = "suites." + name;
    only_keys(t, where, {"signature", "rsa_bits", "curve", "envelope_hash", "mac", "ecdh_curve"});
    suite s;
    s.name = name;
    std::string sig = string_at(t, where, "signature");
    if (sig == "rsa-pss") {
      s.key.scheme = signature_scheme::rsa_pss;
      const toml::node* bits = t.get("rsa_bits");
      if (bits == nullptr || !bits->is_integer()) fail(where + ".rsa_bits", "required integer for rsa-pss");
      auto v = bits->as_integer()->get();
      if (v != 2048 && v != 3072 && v != 4096) fail(where + ".rsa_bits", "must be 2048, 3072 or 4096");
      s.key.rsa_bits = static_cast<unsigned>(v);
      if (t.get("curve") != nullptr) fail(where + ".curve", "not used by rsa-pss");
    } else if (sig == "ecdsa") {
      s.key.scheme = signature_scheme::ecdsa;
      auto c = parse_curve(string_at(t, where, "curve"));
      if (!c) fail(where + ".curve", "must be P-256, P-384 or P-521");
      s.key.curve = *c;
      if (t.get("rsa_bits") != nullptr) fail(where + ".rsa_bits", "not used by ecdsa");
    } else {
      fail(where + ".signature", "must be \"rsa-pss\" or \"ecdsa\", not '" + sig + "'");
    }
    auto h = parse_hash(string_at(t, where, "envelope_hash"));
    if (!h) fail(where + ".envelope_hash", "must be sha256, sha384, sha512, sha3-256, sha3-384 or sha3-512");
    s.envelope_hash = *h;
    // RSA-PSS binds the hash into the padding and the TPM computes that padding, so
    // the hash must be one a TPM implements; no TPM implements SHA-3.
    if (s.key.scheme == signature_scheme::rsa_pss &&
        (s.envelope_hash == hash_algorithm::sha3_256 || s.envelope_hash == hash_algorithm::sha3_384 ||
         s.envelope_hash == hash_algorithm::sha3_512))
      fail(where + ".envelope_hash", "rsa-pss needs a SHA-2 hash (the TPM computes PSS padding; TPMs lack SHA-3)");
    std::string mac = string_at(t, where, "mac");
    if (mac == "hmac-sha256") s.mac_hash = hash_algorithm::sha256;
    else if (mac == "hmac-sha384") s.mac_hash = hash_algorithm::sha384;
    else if (mac == "hmac-sha512") s.mac_hash = hash_algorithm::sha512;
    else fail(where + ".mac", "must be hmac-sha256, hmac-sha384 or hmac-sha512");
    auto ec = parse_curve(string_at(t, where, "ecdh_curve"));
    if (!ec) fail(where + ".ecdh_curve", "must be P-256, P-384 or P-521");
    s.ecdh_curve = *ec;
    return s;
  }

 private:
  std::string source_;
};

// kDefaultsKeys are the keys [defaults] may set; a role table may also name a profile.
const std::initializer_list<std::string_view> kDefaultsKeys = {
    "suite", "assurance", "allow_software", "allow_simulator", "enrolment", "require_attestation", "batch_max_leaves", "batch_max_delay_ms",
    "rekey_after_messages", "rekey_after_seconds", "send_to", "publish", "subscribe"};
const std::initializer_list<std::string_view> kRoleKeys = {
    "profile", "suite", "assurance", "allow_software", "allow_simulator", "enrolment", "require_attestation", "batch_max_leaves",
    "batch_max_delay_ms", "rekey_after_messages", "rekey_after_seconds", "send_to", "publish", "subscribe"};
const std::initializer_list<std::string_view> kProfileKeys = {
    "description", "suite", "assurance", "batch_max_leaves", "batch_max_delay_ms", "rekey_after_messages", "rekey_after_seconds"};

// kMaxRekeySeconds: a year, as the broker's [sessions] allows.
constexpr std::int64_t kMaxRekeySeconds = 31'536'000;

// read_rekey_limits sets what the table says of rekey limits.
void read_rekey_limits(const policy_reader& reader, const toml::table& t, const std::string& where,
                       std::uint64_t& after_messages, std::chrono::seconds& after) {
  if (auto v = reader.optional_integer(t, where, "rekey_after_messages", 1, std::numeric_limits<std::int64_t>::max()))
    after_messages = static_cast<std::uint64_t>(*v);
  if (auto v = reader.optional_integer(t, where, "rekey_after_seconds", 1, kMaxRekeySeconds)) after = std::chrono::seconds(*v);
}

// apply_profile lays a profile's settings over a role's defaults.
void apply_profile(const operation_profile& prof, role_policy& r) {
  r.profile = prof.name;
  if (prof.suite) r.suite = *prof.suite;
  if (prof.accepted_assurance) r.accepted_assurance = *prof.accepted_assurance;
  if (prof.batch_max_leaves) r.batch.max_leaves = *prof.batch_max_leaves;
  if (prof.batch_max_delay) r.batch.max_delay = *prof.batch_max_delay;
  if (prof.rekey_after_messages > 0) r.rekey_after_messages = prof.rekey_after_messages;
  if (prof.rekey_after.count() > 0) r.rekey_after = prof.rekey_after;
}

enrolment_mode read_enrolment_mode(const policy_reader& reader, const toml::table& t, const std::string& where,
                                   enrolment_mode fallback) {
  if (t.get("enrolment") == nullptr) return fallback;
  const std::string v = reader.string_at(t, where, "enrolment");
  if (v == "pinned") return enrolment_mode::pinned;
  if (v == "token") return enrolment_mode::token;
  if (v == "open") return enrolment_mode::open;
  reader.fail(where + ".enrolment", "must be \"pinned\", \"token\" or \"open\", not '" + v + "'");
}

bool valid_role_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; });
}

}  // namespace

policy policy::parse(std::string_view toml_text, const std::string& source) {
  return parse_in(toml_text, source, std::filesystem::current_path());
}

policy policy::parse_in(std::string_view toml_text, const std::string& source, const std::filesystem::path& base_dir) {
  policy_reader reader(source);
  toml::table doc;
  try {
    doc = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << "line " << e.source().begin.line << " column " << e.source().begin.column;
    throw policy_error(source, where.str(), std::string(e.description()));
  }
  reader.only_keys(doc, "", {"version", "suites", "profiles", "defaults", "roles", "agents", "revoked", "revoked_keys",
                             "operators", "attestation"});
  const toml::node* version = doc.get("version");
  if (version == nullptr || !version->is_integer()) reader.fail("version", "missing (must be 1)");
  if (version->as_integer()->get() != 1) reader.fail("version", "unsupported policy version " + std::to_string(version->as_integer()->get()));

  policy p;
  p.source_ = source;
  const toml::table& suites = reader.table_at(doc, "", "suites");
  if (suites.empty()) reader.fail("suites", "must define at least one suite");
  for (auto&& [name, node] : suites) {
    std::string n(name.str());
    if (!node.is_table()) reader.fail("suites." + n, "must be a table");
    p.suites_.push_back(reader.read_suite(n, *node.as_table()));
  }

  role_policy defaults;
  defaults.accepted_assurance = {assurance::tpm, assurance::tpm_batch};
  bool have_default_suite = false;
  if (const toml::node* d = doc.get("defaults")) {
    if (!d->is_table()) reader.fail("defaults", "must be a table");
    const toml::table& t = *d->as_table();
    reader.only_keys(t, "defaults", kDefaultsKeys);
    if (t.get("suite") != nullptr) {
      defaults.suite = reader.string_at(t, "defaults", "suite");
      if (p.find_suite(defaults.suite) == nullptr) reader.fail("defaults.suite", "unknown suite '" + defaults.suite + "'");
      have_default_suite = true;
    }
    if (auto a = reader.optional_assurance(t, "defaults")) defaults.accepted_assurance = *a;
    if (auto b = reader.optional_bool(t, "defaults", "allow_software")) defaults.allow_software = *b;
    if (auto b = reader.optional_bool(t, "defaults", "allow_simulator")) defaults.allow_simulator = *b;
    defaults.enrolment = read_enrolment_mode(reader, t, "defaults", defaults.enrolment);
    if (auto b = reader.optional_bool(t, "defaults", "require_attestation")) defaults.require_attestation = *b;
    reader.read_batch_limits(t, "defaults", defaults.batch);
    read_rekey_limits(reader, t, "defaults", defaults.rekey_after_messages, defaults.rekey_after);
    if (auto v = reader.optional_strings(t, "defaults", "send_to", false)) defaults.send_to = *v;
    if (auto v = reader.optional_strings(t, "defaults", "publish", true)) defaults.publish = *v;
    if (auto v = reader.optional_strings(t, "defaults", "subscribe", true)) defaults.subscribe = *v;
  }

  if (const toml::node* profiles = doc.get("profiles")) {
    if (!profiles->is_table()) reader.fail("profiles", "must be a table of [profiles.<name>] tables");
    for (auto&& [name, node] : *profiles->as_table()) {
      operation_profile prof;
      prof.name = std::string(name.str());
      const std::string where = "profiles." + prof.name;
      if (!node.is_table()) reader.fail(where, "must be a table");
      const toml::table& t = *node.as_table();
      reader.only_keys(t, where, kProfileKeys);
      if (t.get("description") != nullptr) prof.description = reader.string_at(t, where, "description");
      if (t.get("suite") != nullptr) {
        prof.suite = reader.string_at(t, where, "suite");
        if (p.find_suite(*prof.suite) == nullptr) reader.fail(where + ".suite", "unknown suite '" + *prof.suite + "'");
      }
      prof.accepted_assurance = reader.optional_assurance(t, where);
      batch_limits limits;
      reader.read_batch_limits(t, where, limits);
      if (t.get("batch_max_leaves") != nullptr) prof.batch_max_leaves = limits.max_leaves;
      if (t.get("batch_max_delay_ms") != nullptr) prof.batch_max_delay = limits.max_delay;
      read_rekey_limits(reader, t, where, prof.rekey_after_messages, prof.rekey_after);
      p.profiles_.push_back(std::move(prof));
    }
  }

  const toml::table& roles = reader.table_at(doc, "", "roles");
  if (roles.empty()) reader.fail("roles", "must define at least one role");
  for (auto&& [name, node] : roles) {
    std::string n(name.str());
    std::string where = "roles." + n;
    if (!valid_role_name(n)) reader.fail(where, "role names are upper-case letters, digits and '_'");
    if (!node.is_table()) reader.fail(where, "must be a table");
    const toml::table& t = *node.as_table();
    reader.only_keys(t, where, kRoleKeys);
    role_policy r = defaults;
    r.name = n;
    const operation_profile* prof = nullptr;
    if (t.get("profile") != nullptr) {
      const std::string name_of = reader.string_at(t, where, "profile");
      prof = p.find_profile(name_of);
      if (prof == nullptr) reader.fail(where + ".profile", "unknown profile '" + name_of + "' (no [profiles." + name_of + "])");
      apply_profile(*prof, r);
    }
    if (t.get("suite") != nullptr) {
      r.suite = reader.string_at(t, where, "suite");
      if (p.find_suite(r.suite) == nullptr) reader.fail(where + ".suite", "unknown suite '" + r.suite + "'");
    } else if (!have_default_suite && !(prof && prof->suite)) {
      reader.fail(where + ".suite", "missing, and neither [defaults] nor its profile names a suite");
    }
    if (auto a = reader.optional_assurance(t, where)) r.accepted_assurance = *a;
    if (auto b = reader.optional_bool(t, where, "allow_software")) r.allow_software = *b;
    if (auto b = reader.optional_bool(t, where, "allow_simulator")) r.allow_simulator = *b;
    r.enrolment = read_enrolment_mode(reader, t, where, r.enrolment);
    if (auto b = reader.optional_bool(t, where, "require_attestation")) r.require_attestation = *b;
    reader.read_batch_limits(t, where, r.batch);
    read_rekey_limits(reader, t, where, r.rekey_after_messages, r.rekey_after);
    if (auto v = reader.optional_strings(t, where, "send_to", false)) r.send_to = *v;
    if (auto v = reader.optional_strings(t, where, "publish", true)) r.publish = *v;
    if (auto v = reader.optional_strings(t, where, "subscribe", true)) r.subscribe = *v;
    // A role that accepts software-signed envelopes but refuses software keys (or
    // the reverse) is a contradiction an operator should hear about at load time.
    bool accepts_software_level = std::find(r.accepted_assurance.begin(), r.accepted_assurance.end(),
                                            assurance::software) != r.accepted_assurance.end();
    if (accepts_software_level != r.allow_software)
      reader.fail(where + ".assurance", "\"software\" must be listed exactly when allow_software = true");
    p.roles_.push_back(std::move(r));
  }
  for (const role_policy& r : p.roles_)
    for (const std::string& to : r.send_to)
      if (to != "*" && p.find_role(to) == nullptr)
        reader.fail("roles." + r.name + ".send_to", "unknown role '" + to + "'");

  if (const toml::node* agents = doc.get("agents")) {
    if (!agents->is_table()) reader.fail("agents", "must be a table");
    for (auto&& [name, node] : *agents->as_table()) {
      std::string n(name.str());
      std::string where = "agents." + n;
      if (!node.is_table()) reader.fail(where, "must be a table");
      const toml::table& t = *node.as_table();
      reader.only_keys(t, where, {"role", "fingerprint"});
      agent_pin pin;
      pin.name = n;
      pin.role = reader.string_at(t, where, "role");
      if (p.find_role(pin.role) == nullptr) reader.fail(where + ".role", "unknown role '" + pin.role + "'");
      if (t.get("fingerprint") != nullptr) {
        auto fp = parse_fingerprint(reader.string_at(t, where, "fingerprint"));
        if (!fp) reader.fail(where + ".fingerprint", kFingerprintForm);
        pin.fingerprint = *fp;
      }
      // A role that enrols by pin has no other way in: a pin without a key would
      // admit nobody, or (were it read as "any key") anybody.
      if (pin.fingerprint.empty() && p.find_role(pin.role)->enrolment == enrolment_mode::pinned)
        reader.fail(where + ".fingerprint", "missing: role " + pin.role + " enrols by pin (enrolment = \"pinned\")");
      p.pins_.push_back(std::move(pin));
    }
  }
  if (auto revoked = reader.optional_strings(doc, "", "revoked", false)) p.revoked_ = *revoked;
  if (auto keys = reader.optional_strings(doc, "", "revoked_keys", false)) {
    for (std::string& fp : *keys) {
      auto parsed = parse_fingerprint(fp);
      if (!parsed) reader.fail("revoked_keys", "'" + fp.substr(0, 80) + "': " + kFingerprintForm);
      fp = *parsed;
    }
    p.revoked_keys_ = std::move(*keys);
  }
  if (const toml::node* att = doc.get("attestation")) {
    if (!att->is_table()) reader.fail("attestation", "must be a table");
    reader.only_keys(*att->as_table(), "attestation", {"ek_ca"});
    if (const toml::node* cas = att->as_table()->get("ek_ca")) {
      if (!cas->is_table()) reader.fail("attestation.ek_ca", "must be a table of tables");
      for (auto&& [name, node] : *cas->as_table()) {
        const std::string where = "attestation.ek_ca." + std::string(name.str());
        if (!node.is_table()) reader.fail(where, "must be a table");
        const toml::table& t = *node.as_table();
        reader.only_keys(t, where, {"root", "intermediates", "simulator"});
        ek_ca ca;
        ca.name = std::string(name.str());
        auto read_pem = [&](const std::string& field, const std::string& file) {
          std::filesystem::path path(file);
          if (path.is_relative()) path = base_dir / path;
          std::ifstream in(path, std::ios::binary);
          if (!in) reader.fail(where + "." + field, "cannot read '" + path.string() + "'");
          std::ostringstream text;
          text << in.rdbuf();
          if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos)
            reader.fail(where + "." + field, "'" + path.string() + "' is not a PEM certificate");
          return text.str();
        };
        ca.root_pem = read_pem("root", reader.string_at(t, where, "root"));
        if (auto list = reader.optional_strings(t, where, "intermediates", false))
          for (const auto& f : *list) ca.intermediates_pem.push_back(read_pem("intermediates", f));
        if (auto b = reader.optional_bool(t, where, "simulator")) ca.simulator = *b;
        p.ek_cas_.push_back(std::move(ca));
      }
    }
  }
  for (const role_policy& r : p.roles_)
    if (r.require_attestation && p.ek_cas_.empty())
      reader.fail("roles." + r.name + ".require_attestation", "no [attestation.ek_ca.<name>] is trusted: nobody could enrol");
  if (const toml::node* ops = doc.get("operators")) {
    if (!ops->is_table()) reader.fail("operators", "must be a table");
    for (auto&& [name, node] : *ops->as_table()) {
      std::string where = "operators." + std::string(name.str());
      if (!node.is_table()) reader.fail(where, "must be a table");
      reader.only_keys(*node.as_table(), where, {"fingerprint"});
      auto fp = parse_fingerprint(reader.string_at(*node.as_table(), where, "fingerprint"));
      if (!fp) reader.fail(where + ".fingerprint", kFingerprintForm);
      operator_key op{std::string(name.str()), *fp};
      p.operators_.push_back(std::move(op));
    }
  }
  return p;
}

policy policy::load_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw policy_error(file.string(), "(file)", "cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_in(text.str(), file.string(), file.has_parent_path() ? file.parent_path() : std::filesystem::current_path());
}

policy policy::builtin_default() { return parse(kDefaultPolicyToml, "<built-in default policy>"); }

const operation_profile* policy::find_profile(std::string_view name) const noexcept {
  for (const auto& p : profiles_)
    if (p.name == name) return &p;
  return nullptr;
}

const role_policy* policy::find_role(std::string_view role) const noexcept {
  for (const auto& r : roles_)
    if (r.name == role) return &r;
  return nullptr;
}

const suite* policy::find_suite(std::string_view name) const noexcept {
  for (const auto& s : suites_)
    if (s.name == name) return &s;
  return nullptr;
}

const agent_pin* policy::find_pin(std::string_view agent) const noexcept {
  for (const auto& pin : pins_)
    if (pin.name == agent) return &pin;
  return nullptr;
}

const operator_key* policy::find_operator(std::string_view fingerprint) const noexcept {
  for (const auto& op : operators_)
    if (op.fingerprint == fingerprint) return &op;
  return nullptr;
}

bool policy::is_key_revoked(std::string_view fingerprint) const noexcept {
  return std::find(revoked_keys_.begin(), revoked_keys_.end(), fingerprint) != revoked_keys_.end();
}

std::string_view enrolment_mode_name(enrolment_mode m) noexcept {
  switch (m) {
    case enrolment_mode::pinned: return "pinned";
    case enrolment_mode::token: return "token";
    case enrolment_mode::open: return "open";
  }
  return "?";
}

bool policy::is_revoked(std::string_view agent) const noexcept {
  return std::find(revoked_.begin(), revoked_.end(), agent) != revoked_.end();
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
  for (;;) {
    std::size_t ps = pattern.find('/'), ts = topic.find('/');
    std::string_view pseg = pattern.substr(0, ps), tseg = topic.substr(0, ts);
    if (pseg == ">") return !topic.empty();
    if (pseg != "*" && pseg != tseg) return false;
    if (ps == std::string_view::npos || ts == std::string_view::npos) return ps == ts;
    pattern.remove_prefix(ps + 1);
    topic.remove_prefix(ts + 1);
  }
}

namespace {

// next_segment takes the first '/'-separated segment off `rest` (nothing allocated);
// false when there is none left.
bool next_segment(std::string_view& rest, std::string_view& seg, bool& more) noexcept {
  if (!more) return false;
  const std::size_t slash = rest.find('/');
  seg = rest.substr(0, slash);
  more = slash != std::string_view::npos;
  rest = more ? rest.substr(slash + 1) : std::string_view();
  return true;
}

bool literal_segment(std::string_view seg) noexcept {
  return !seg.empty() && std::all_of(seg.begin(), seg.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

status match_any(const std::vector<std::string>& patterns, std::string_view topic, const std::string& role,
                 const char* verb, bool (*matches)(std::string_view, std::string_view) noexcept) {
  for (const auto& p : patterns)
    if (matches(p, topic)) return {};
  return {status_code::acl_denied, "role " + role + " may not " + verb + " '" + std::string(topic.substr(0, 128)) + "'"};
}

}  // namespace

bool is_topic_pattern(std::string_view pattern) noexcept {
  if (pattern.empty() || pattern.size() > 1024) return false;
  std::string_view rest = pattern, seg;
  bool more = true;
  while (next_segment(rest, seg, more)) {
    if (seg == ">") {
      if (more) return false;  // '>' only at the end
    } else if (seg != "*" && !literal_segment(seg)) {
      return false;
    }
  }
  return true;
}

bool is_concrete_topic(std::string_view topic) noexcept {
  if (topic.empty() || topic.size() > 1024) return false;
  std::string_view rest = topic, seg;
  bool more = true;
  while (next_segment(rest, seg, more))
    if (!literal_segment(seg)) return false;
  return true;
}

bool is_queue_group_name(std::string_view group) noexcept {
  return !group.empty() && group.size() <= 64 && std::all_of(group.begin(), group.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

bool pattern_covers(std::string_view outer, std::string_view inner) noexcept {
  std::string_view orest = outer, irest = inner, o, in;
  bool omore = true, imore = true;
  while (next_segment(orest, o, omore)) {
    if (o == ">") return next_segment(irest, in, imore);  // the rest of inner: one segment or more, whatever it holds
    if (!next_segment(irest, in, imore)) return false;
    if (in == ">") return false;  // inner reaches deeper than this segment
    if (o == "*") continue;       // a literal or '*'
    if (in == "*" || o != in) return false;
  }
  return !imore;  // inner has no segment left
}

status policy::check_send(std::string_view sender_role, std::string_view recipient_role) const {
  const role_policy* r = find_role(sender_role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(sender_role) + "' is not in the policy"};
  for (const auto& to : r->send_to)
    if (to == "*" || to == recipient_role) return {};
  return {status_code::acl_denied, "role " + r->name + " may not send to role " + std::string(recipient_role)};
}

status policy::check_publish(std::string_view role, std::string_view topic) const {
  const role_policy* r = find_role(role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(role) + "' is not in the policy"};
  if (!is_concrete_topic(topic))
    return {status_code::invalid_field, "'" + std::string(topic.substr(0, 128)) +
                                            "' is not a topic to publish to (segments of A-Z a-z 0-9 . _ -, no wildcards)"};
  return match_any(r->publish, topic, r->name, "publish to", topic_matches);
}

status policy::check_subscribe(std::string_view role, std::string_view topic) const {
  const role_policy* r = find_role(role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(role) + "' is not in the policy"};
  if (!is_topic_pattern(topic))
    return {status_code::invalid_field, "'" + std::string(topic.substr(0, 128)) +
                                            "' is not a topic or a pattern ('*' one segment, a final '>' the rest)"};
  return match_any(r->subscribe, topic, r->name, "subscribe to", pattern_covers);
}

result<suite> policy::suite_for(std::string_view role) const {
  const role_policy* r = find_role(role);
  if (r == nullptr) return status{status_code::unknown_role, "role '" + std::string(role) + "' is not in the policy"};
  const suite* s = find_suite(r->suite);
  if (s == nullptr) return status{status_code::internal, "role suite vanished"};  // validated at load
  return *s;
}

status policy::check_declared_suite(std::string_view sender_role, std::string_view declared_suite) const {
  const role_policy* r = find_role(sender_role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(sender_role) + "' is not in the policy"};
  if (r->suite != declared_suite)
    return {status_code::suite_mismatch, "role " + r->name + " must use suite " + r->suite + ", envelope declares '" +
                                             std::string(declared_suite.substr(0, 64)) + "'"};
  return {};
}

status policy::check_assurance(std::string_view sender_role, assurance level) const {
  const role_policy* r = find_role(sender_role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(sender_role) + "' is not in the policy"};
  if (std::find(r->accepted_assurance.begin(), r->accepted_assurance.end(), level) == r->accepted_assurance.end())
    return {status_code::assurance_refused,
            "role " + r->name + " does not accept assurance '" + std::string(assurance_name(level)) + "'"};
  return {};
}

result<batch_limits> policy::batch_limits_for(std::string_view role) const {
  const role_policy* r = find_role(role);
  if (r == nullptr) return status{status_code::unknown_role, "role '" + std::string(role) + "' is not in the policy"};
  return r->batch;
}

status policy::check_batch_size(std::string_view sender_role, std::uint32_t leaf_count) const {
  const role_policy* r = find_role(sender_role);
  if (r == nullptr) return {status_code::unknown_role, "role '" + std::string(sender_role) + "' is not in the policy"};
  if (leaf_count > r->batch.max_leaves)
    return {status_code::batch_too_large, "role " + r->name + " accepts batches of at most " +
                                              std::to_string(r->batch.max_leaves) + " envelopes, proof names a batch of " +
                                              std::to_string(leaf_count)};
  return {};
}

}  // namespace agentbus
