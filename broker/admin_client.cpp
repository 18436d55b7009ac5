#include "admin_client.hpp"

#include <zmq.hpp>

#include "admin_protocol.hpp"

namespace agentbus::broker {

using json = nlohmann::json;

namespace {
status_code code_from_name(std::string_view name) {
  for (int c = 0; c < 600; ++c)
    if (status_code_name(static_cast<status_code>(c)) == name) return static_cast<status_code>(c);
  return status_code::internal;
}
}  // namespace

std::optional<result<json>> decode_admin_reply(const json& reply) {
  if (!reply.is_object()) return std::nullopt;
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) return std::nullopt;
  if (ok->get<bool>()) {
    auto r = reply.find("result");
    if (r == reply.end()) return std::nullopt;
    return result<json>(*r);
  }
  auto err = reply.find("error");
  if (err == reply.end() || !err->is_object()) return std::nullopt;
  std::string code = err->value("code", std::string("internal"));
  std::string message = err->value("message", std::string());
  return result<json>(status{code_from_name(code), message});
}

admin_client::admin_client(std::string endpoint, int timeout_ms) : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms) {}

result<json> admin_client::request(const json& req) const {
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::req);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::rcvtimeo, timeout_ms_);
  sock.set(zmq::sockopt::sndtimeo, timeout_ms_);
  sock.connect(endpoint_);
  const std::string frame = req.dump();
  zmq::message_t reply;
  if (!sock.send(zmq::buffer(frame), zmq::send_flags::none) || !sock.recv(reply, zmq::recv_flags::none))
    throw admin_unreachable("the broker's admin endpoint " + endpoint_ + " did not answer within " +
                            std::to_string(timeout_ms_) + " ms");
  json j = json::parse(reply.to_string(), nullptr, false);
  auto r = j.is_discarded() ? std::nullopt : decode_admin_reply(j);
  if (!r) throw admin_unreachable("the admin endpoint " + endpoint_ + " does not speak the JSON admin protocol");
  return std::move(*r);
}

result<json> admin_client::signed_request(const json& inner, identity_key& operator_key,
                                          const std::string& operator_name) const {
  auto broker = broker_fingerprint();  // the request is for this broker only
  if (!broker) return broker.error();
  return request(json::parse(make_signed_request(inner, operator_key, operator_name, *broker)));
}

result<std::string> admin_client::broker_fingerprint() const {
  auto r = request({{"op", "broker"}});
  if (!r) return r.error();
  if (!r->is_object() || !(*r)["fingerprint"].is_string())
    return status{status_code::internal, "the broker did not say its fingerprint"};
  return (*r)["fingerprint"].get<std::string>();
}

result<std::string> admin_client::broker_transport_key() const {
  auto r = request({{"op", "broker"}});
  if (!r) return r.error();
  if (!r->is_object()) return status{status_code::internal, "the broker did not describe itself"};
  auto tk = r->find("transport_key");
  return tk != r->end() && tk->is_string() ? tk->get<std::string>() : std::string{};
}

result<std::string> admin_client::issue_token(identity_key& operator_key, const std::string& operator_name,
                                              const std::string& name, const std::string& role,
                                              const std::string& fingerprint, std::int64_t ttl_seconds,
                                              const std::string& ek_fingerprint) const {
  json inner{{"op", "token_create"}, {"agent", name}, {"role", role}, {"ttl_seconds", ttl_seconds}};
  if (!fingerprint.empty()) inner["fingerprint"] = fingerprint;
  if (!ek_fingerprint.empty()) inner["ek_fingerprint"] = ek_fingerprint;
  auto r = signed_request(inner, operator_key, operator_name);
  if (!r) return r.error();
  return (*r)["token"].get<std::string>();
}

}  // namespace agentbus::broker
