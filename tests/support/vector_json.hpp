// vector_json.hpp — reading the test vectors' JSON fields (tests only).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::testing::vectors {

using json = nlohmann::json;

inline std::filesystem::path vectors_dir() { return std::filesystem::path(AGENTBUS_SOURCE_DIR) / "schemas" / "vectors"; }

// load parses a vector file (throws when it does not parse: the test fails).
inline json load(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

inline std::string str(const json& j) { return j.get<std::string>(); }

// hex: a hex field as bytes (a bad one fails the test).
inline bytes hex(const json& j) {
  bool ok = false;
  bytes b = from_hex(j.get<std::string>(), &ok);
  EXPECT_TRUE(ok) << "bad hex in vector: " << j;
  return b;
}

// secret: a hex field as secret bytes (ECDH shares, MAC keys).
inline secret_bytes secret(const json& j) {
  const bytes b = hex(j);
  return secret_bytes(b.data(), b.size());
}

inline hash_algorithm hash_of(const json& j) {
  auto h = parse_hash(j.get<std::string>());
  EXPECT_TRUE(h.has_value()) << j;
  return h.value_or(hash_algorithm::sha256);
}

inline ec_curve curve_of(const json& j) {
  auto c = parse_curve(j.get<std::string>());
  EXPECT_TRUE(c.has_value()) << j;
  return c.value_or(ec_curve::p256);
}

// key_type_of reads signature_scheme, and rsa_bits or curve, from `j`.
inline key_type key_type_of(const json& j) {
  key_type t;
  if (j["signature_scheme"] == "rsa-pss") {
    t.scheme = signature_scheme::rsa_pss;
    t.rsa_bits = j["rsa_bits"].get<unsigned>();
  } else {
    t.scheme = signature_scheme::ecdsa;
    t.curve = curve_of(j["curve"]);
  }
  return t;
}

// suite_of reads a suite object of the vectors (name, signature_scheme, curve,
// rsa_bits, envelope_hash, mac_hash, ecdh_curve).
inline suite suite_of(const json& j) {
  suite s;
  s.name = str(j["name"]);
  s.key = key_type_of(j);
  s.envelope_hash = hash_of(j["envelope_hash"]);
  s.mac_hash = hash_of(j["mac_hash"]);
  s.ecdh_curve = curve_of(j["ecdh_curve"]);
  return s;
}

}  // namespace agentbus::testing::vectors
