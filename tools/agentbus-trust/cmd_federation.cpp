// agentbus-trust federation — the brokers of a federation and where each agent lives
// (admin `federation`); agentbus-trust nkey — a NATS user NKEY for a broker of a
// federation (docs/federation.md): the seed goes to a new file only the owner can
// read, the public key is printed for nats-server's authorization block.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <openssl/crypto.h>

#include "commands.hpp"
#include "nats_nkey.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {
namespace {

std::string text_of(const nlohmann::json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

void print_federation(std::ostream& out, const nlohmann::json& r) {
  if (!r.value("federated", false)) {
    out << "not federated: this broker has no [federation] section\n";
    return;
  }
  out << "broker " << text_of(r["broker"]) << (r.value("connected", false) ? " (connected to NATS)" : " (NOT connected to NATS)")
      << ", subjects " << text_of(r["prefix"]) << ".b.<broker>.>, directory bucket " << text_of(r["bucket"]) << "\n\n";
  text_table brokers({"BROKER", "LIVE", "HEARTBEAT AGE", "AGENTS", "FINGERPRINT"});
  for (const auto& b : r["brokers"]) {
    const auto& age = b["heartbeat_age_ms"];
    brokers.add({text_of(b["name"]) + (b.value("self", false) ? " (this)" : ""), text_of(b["live"]),
                 age.is_null() ? "never" : std::to_string(age.get<long long>()) + " ms", text_of(b["agents"]),
                 text_of(b["fingerprint"]).substr(0, 16)});
  }
  brokers.print(out);
  out << "\n";
  text_table agents({"AGENT", "ROLE", "HOME", "ONLINE", "REACHABLE", "ATTESTED", "SUBSCRIPTIONS"});
  for (const auto& a : r["agents"])
    agents.add({text_of(a["name"]), text_of(a["role"]), text_of(a["home"]), text_of(a["online"]), text_of(a["reachable"]),
                text_of(a["attested"]), text_of(a["subscriptions"])});
  agents.print(out);
}

}  // namespace

void add_federation_command(CLI::App& app, const global_options& global, int* result) {
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("federation",
                                     "The brokers of the federation this broker belongs to (live or not, by their "
                                     "directory heartbeats) and where each agent lives");
  cmd->add_flag("--json", *as_json, "Print the admin result as JSON");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, as_json, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "federation"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (*as_json) std::cout << r->dump(2) << "\n";
    else print_federation(std::cout, *r);
    *result = kOk;
  });
}

void add_nkey_command(CLI::App& app, const global_options&, int* result) {
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("nkey",
                                     "Make a NATS user NKEY for a broker of a federation: the seed is written to --out "
                                     "(mode 0600, never overwritten), the public key (U...) printed for nats-server's "
                                     "authorization");
  cmd->add_option("--out", *out, "The seed file to create ([federation] nkey_seed_file)")->required();
  cmd->footer(kExitCodesFooter);
  cmd->callback([out, result] {
    broker::nkey_pair key = broker::generate_user_nkey();
    const int fd = ::open(out->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw tool_error(kFailure, *out + ": " + std::strerror(errno) + " (an existing seed is never overwritten)");
    const std::string text = key.seed + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    OPENSSL_cleanse(key.seed.data(), key.seed.size());
    if (!written) throw tool_error(kFailure, *out + ": write failed");
    std::cout << key.public_key << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
