// agentbus-trust broker | token create | tokens | revoke-key | reject — the enrolment
// authority's commands (schemas/admin.md §3-4; docs/operations.md "Enrolling an agent").
//
// `token create` asks the broker for a one-time token (operator-signed) and writes
// the enrolment bundle an agent's owner needs: name, role, the broker's fingerprint
// (and endpoint), the token. The token exists in clear only in that file (mode 0600,
// never overwritten) and the admin reply; the broker keeps its hash.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "operator_request.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

namespace {

// toml_string quotes a value for a TOML basic string (names and endpoints: no
// control characters reach here, but quotes and backslashes might).
std::string toml_string(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// secret_file is the bundle being written: created (O_EXCL, 0600) before the token
// is asked for, so that a file that cannot be written never leaves a live token
// behind; removed again unless commit() wrote it whole.
class secret_file {
 public:
  explicit secret_file(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw tool_error(kFailure, "cannot create " + path_ + ": " + std::strerror(errno) + " (it is never overwritten)");
  }
  secret_file(const secret_file&) = delete;
  secret_file& operator=(const secret_file&) = delete;
  ~secret_file() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  void commit(const std::string& text) {
    std::size_t off = 0;
    while (off < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw tool_error(kFailure, "cannot write " + path_ + ": " + std::strerror(errno));
      off += static_cast<std::size_t>(n);
    }
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) throw tool_error(kFailure, "cannot write " + path_ + ": " + std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

void add_token_create(CLI::App* token, const global_options& global, int* result) {
  struct options {
    std::string agent, role, fingerprint, ek, endpoint, out;
    std::int64_t ttl = 3600;
    operator_options op;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = token->add_subcommand(
      "create", "Issue a one-time enrolment token for AGENT in ROLE (operator-signed) and write the enrolment bundle");
  cmd->add_option("AGENT", opts->agent, "Agent name the token admits")->required();
  cmd->add_option("--role", opts->role, "Role the token admits")->required();
  cmd->add_option("--fingerprint", opts->fingerprint, "Admit only this key (64 hex digits; `agentbus-key create` prints it)")
      ->transform(fingerprint_option());
  cmd->add_option("--ek", opts->ek,
                  "Admit only a key attested by this TPM: its EK's fingerprint (64 hex digits; `agentbus-key info` "
                  "prints it)")
      ->transform(fingerprint_option());
  cmd->add_option("--ttl", opts->ttl, "Seconds until the token expires (default 3600, at most 7 days)")
      ->check(CLI::Range(1, 7 * 24 * 3600));
  cmd->add_option("--endpoint", opts->endpoint, "The broker endpoint the agent should connect to (written to the bundle)");
  cmd->add_option("--out", opts->out, "Write the enrolment bundle here (mode 0600, never overwritten); else print it");
  add_operator_options(cmd, opts->op);
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    std::optional<secret_file> out;
    if (!opts->out.empty()) out.emplace(opts->out);
    nlohmann::json inner{{"op", "token_create"}, {"agent", opts->agent}, {"role", opts->role}, {"ttl_seconds", opts->ttl}};
    if (!opts->fingerprint.empty()) inner["fingerprint"] = opts->fingerprint;
    if (!opts->ek.empty()) inner["ek_fingerprint"] = opts->ek;
    auto r = send_operator_request(global, opts->op, inner);
    const auto& broker = r.at("broker");
    const auto& rec = r.at("token_record");
    std::ostringstream bundle;
    bundle << "# agentbus enrolment bundle for " << opts->agent << " (" << opts->role << "), token "
           << rec.value("id", std::string()) << ", issued by operator " << r.value("operator", std::string("?")) << ".\n"
           << "# It holds a secret: hand it to the agent's owner only. The token enrols once; an agent on TCP keeps\n"
           << "# the file (the key derived from the token is its transport key), an agent on ipc deletes it once enrolled.\n"
           << "name = " << toml_string(opts->agent) << "\n"
           << "role = " << toml_string(opts->role) << "\n"
           << "broker_name = " << toml_string(broker.value("name", std::string())) << "\n"
           << "broker_fingerprint = " << toml_string(broker.value("fingerprint", std::string())) << "\n";
    if (!opts->endpoint.empty()) bundle << "broker_endpoint = " << toml_string(opts->endpoint) << "\n";
    // The broker's CurveZMQ key, for tcp:// endpoints (null: it listens on none).
    if (auto tk = broker.find("transport_key"); tk != broker.end() && tk->is_string())
      bundle << "broker_transport_key = " << toml_string(tk->get<std::string>()) << "\n";
    bundle << "token = " << toml_string(r.at("token").get<std::string>()) << "\n"
           << "expires_at_unix_ms = " << rec.value("expires_at", std::int64_t{0}) << "\n";
    if (opts->op.json) {
      nlohmann::json shown = r;
      if (out) shown["token"] = "(written to " + opts->out + ")";  // one copy of the secret, in the 0600 file
      std::cout << shown.dump(2) << "\n";
    } else if (opts->out.empty()) {
      std::cout << bundle.str();
    }
    if (out) {
      out->commit(bundle.str());
      if (!opts->op.json)
        std::cout << "wrote the enrolment bundle for " << opts->agent << " to " << opts->out << " (token "
                  << rec.value("id", std::string()) << ", expires in " << opts->ttl << " s)\n";
    }
    *result = kOk;
  });
}

}  // namespace

void add_enrolment_commands(CLI::App& app, const global_options& global, int* result) {
  {
    auto json_out = std::make_shared<bool>(false);
    CLI::App* cmd = app.add_subcommand("broker",
                                       "Show the broker's name and identity fingerprint (what agents pin) and, on a "
                                       "second line, its CurveZMQ transport key when it listens on TCP, and the URL of its metrics "
                                       "endpoint when it has one");
    cmd->add_flag("--json", *json_out, "Print the admin result as JSON");
    cmd->callback([&global, json_out, result] {
      auto src = open_source(global);
      auto r = src->request({{"op", "broker"}});
      if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
      if (r->is_null()) throw tool_error(kFailure, "the broker identity is known only to the running broker (not --db)");
      if (*json_out) std::cout << r->dump(2) << "\n";
      else {
        std::cout << r->value("name", std::string()) << " " << r->value("fingerprint", std::string()) << "\n";
        if (auto tk = r->find("transport_key"); tk != r->end() && tk->is_string())
          std::cout << "transport_key " << tk->get<std::string>() << "\n";
        if (auto url = r->find("metrics_url"); url != r->end() && url->is_string())
          std::cout << "metrics_url " << url->get<std::string>() << "\n";
      }
      *result = kOk;
    });
  }
  {
    CLI::App* token = app.add_subcommand("token", "Enrolment tokens: create one, list them");
    token->require_subcommand(1);
    add_token_create(token, global, result);
    auto json_out = std::make_shared<bool>(false);
    CLI::App* list = token->add_subcommand("list", "List the tokens the broker keeps (ids only: no secret is stored)");
    list->add_flag("--json", *json_out, "Print the admin result as JSON");
    list->callback([&global, json_out, result] {
      auto src = open_source(global);
      auto r = src->request({{"op", "tokens"}});
      if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
      if (*json_out) {
        std::cout << r->dump(2) << "\n";
      } else {
        for (const auto& t : *r)
          std::cout << t.value("id", std::string()) << "  " << t.value("agent", std::string()) << " ("
                    << t.value("role", std::string()) << ")  " << (t["used_at"].is_null() ? "unused" : "used") << "\n";
      }
      *result = kOk;
    });
  }
  {
    struct options {
      std::string fingerprint, reason;
      operator_options op;
    };
    auto opts = std::make_shared<options>();
    CLI::App* cmd = app.add_subcommand("revoke-key", "Refuse a key under any name and role (operator-signed); agents "
                                                     "pinned to it are revoked with it");
    cmd->add_option("FINGERPRINT", opts->fingerprint, "SHA-256 fingerprint (64 hex digits, sha256: prefix optional)")->required()->transform(fingerprint_option());
    cmd->add_option("--reason", opts->reason, "Why (kept in the registry)")->required();
    add_operator_options(cmd, opts->op);
    cmd->footer(kExitCodesFooter);
    cmd->callback([&global, opts, result] {
      auto r = send_operator_request(global, opts->op,
                                     {{"op", "revoke_key"}, {"fingerprint", opts->fingerprint}, {"reason", opts->reason}});
      if (opts->op.json) std::cout << r.dump(2) << "\n";
      else std::cout << "revoked key " << opts->fingerprint.substr(0, 16) << "... (agents revoked with it: "
                     << r.at("revoked_agents").size() << ")\n";
      *result = kOk;
    });
  }
  {
    struct options {
      std::string agent, fingerprint;
      operator_options op;
    };
    auto opts = std::make_shared<options>();
    CLI::App* cmd = app.add_subcommand("reject", "Discard an agent's pending key change (operator-signed)");
    cmd->add_option("AGENT", opts->agent, "Agent name")->required();
    cmd->add_option("--fingerprint", opts->fingerprint, "The pending key's fingerprint (64 hex digits)")
        ->required()
        ->transform(fingerprint_option());
    add_operator_options(cmd, opts->op);
    cmd->footer(kExitCodesFooter);
    cmd->callback([&global, opts, result] {
      auto r = send_operator_request(global, opts->op,
                                     {{"op", "reject"}, {"agent", opts->agent}, {"fingerprint", opts->fingerprint}});
      if (opts->op.json) std::cout << r.dump(2) << "\n";
      else std::cout << "discarded the pending key of " << opts->agent << "\n";
      *result = kOk;
    });
  }
}

}  // namespace agentbus::trust_tool
