// vector_json.hpp — reading the test vectors' JSON fields (tests only).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::testing::vectors {

using json = nlohmann::json;

inline std::string str(const json& j) { return j.get<std::string>(); }

// hex: a hex field as bytes (a bad one fails the test).
inline bytes hex(const json& j) {
  bool ok = false;
  bytes b = from_hex(j.get<std::string>(), &ok);
  EXPECT_TRUE(ok) << "bad hex in vector: " << j;
  return b;
}

inline hash_algorithm hash_of(const json& j) {
  auto h = parse_hash(j.get<std::string>());
  EXPECT_TRUE(h.has_value()) << j;
  return h.value_or(hash_algorithm::sha256);
}

}  // namespace agentbus::testing::vectors
