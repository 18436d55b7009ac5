// hop_handshake.hpp — the agent's side of one enrolment (internal; schemas/protocol.md
// §3): HELLO → CHALLENGE → PROOF → WELCOME. No sockets and no threads of its own, so
// it runs in a unit test against the broker's side.
//
// on_challenge does the TPM work (the PROOF signature and the static ECDH share) and
// derives the hop keys before PROOF leaves, so that on_welcome is software only (a
// MAC check): the io thread runs it the moment WELCOME arrives, before any envelope
// the broker MACed under the new keys can be read.
//
// Not thread-safe: the broker link calls with_cookie and on_challenge (const) on its
// worker, which alone touches the HELLO, and on_welcome / keys_ready / proof_sent
// under its own lock (the io thread reads only the keys).
#pragma once

#include <optional>
#include <string>

#include "agentbus/identity.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"

namespace agentbus::client {

class hop_handshake {
 public:
  // broker_pin: the broker identity's expected fingerprint (hex, any case), or empty
  // (the caller decided that an unpinned broker is acceptable). token: the enrolment
  // token to seal into PROOF, or null.
  hop_handshake(identity_key& key, const suite& my_suite, std::string agent_name, std::string broker_pin,
                const secret_bytes* token = nullptr);

  // hello is the HELLO body: at first without a cookie (fresh ephemeral key and
  // nonce), after with_cookie the one that returns it.
  const bytes& hello() const noexcept { return hello_bytes_; }
  // with_cookie answers the broker's COOKIE: the HELLO again with the cookie, the
  // identity key's signature over its first 13 fields (TPM) and, with a token, the
  // token proof (schemas/protocol.md §3.1). Returns the new HELLO body, which the
  // transcripts then cover. Worker thread, before on_challenge.
  result<bytes> with_cookie(byte_view cookie_body);

  // on_challenge checks the broker (its pin, then its signature over the transcript),
  // computes the shared secrets (TPM ECDH_ZGen here), signs the PROOF (TPM) and
  // derives the hop keys. It changes nothing in the handshake: the caller publishes
  // the keys with keys_ready (under whatever lock guards its readers) before the
  // PROOF leaves.
  struct proof {
    bytes body;
    session::agreed_keys keys;
  };
  result<proof> on_challenge(byte_view challenge_body) const;
  void keys_ready(session::agreed_keys keys) { keys_ = std::move(keys); }

  // on_welcome checks WELCOME's key confirmation against the keys derived at
  // on_challenge and hands them over (once).
  struct welcome {
    session::agreed_keys keys;
    std::uint64_t rekey_after_messages = 0;
    std::chrono::seconds rekey_after{0};
  };
  result<welcome> on_welcome(byte_view welcome_body);

  // static_key_failed: this identity should have a static ECDH key on the role's
  // curve and could not produce it; the hop runs on ephemeral ECDH (counted by the
  // caller).
  bool static_key_failed() const noexcept { return static_key_failed_; }
  bool proof_sent() const noexcept { return keys_.has_value(); }

 private:
  identity_key& key_;
  suite suite_;
  std::string name_, broker_pin_;
  std::optional<secret_bytes> token_;
  crypto::ec_keypair ephemeral_;
  std::optional<crypto::public_key> static_pub_;
  bool static_key_failed_ = false;
  session::hello_msg hello_;
  bytes hello_bytes_;
  std::optional<session::agreed_keys> keys_;
};

}  // namespace agentbus::client
