#include "tpm_counters.hpp"

namespace agentbus::bench {

tpm_op_map tpm_op_counts(const std::vector<std::shared_ptr<tpm::tpm>>& tpms) {
  tpm_op_map out;
  for (const auto& t : tpms)
    if (t)
      for (const auto& s : t->stats()) out[s.operation] += s.count;
  return out;
}

tpm_op_map tpm_ops_since(const tpm_op_map& before, const tpm_op_map& after) {
  tpm_op_map grown;
  for (const auto& [op, count] : after) {
    auto it = before.find(op);
    const std::uint64_t was = it == before.end() ? 0 : it->second;
    if (count > was) grown[op] = count - was;
  }
  return grown;
}

std::uint64_t signatures_in(const tpm_op_map& ops) {
  std::uint64_t n = 0;
  for (const auto& [op, count] : ops)
    if (op.rfind("sign", 0) == 0) n += count;
  return n;
}

}  // namespace agentbus::bench
