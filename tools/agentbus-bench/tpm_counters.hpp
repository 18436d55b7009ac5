// tpm_counters.hpp — TPM commands counted by the TPM layer (tpm::tpm::stats),
// summed over a run's TPMs, and what a measured window added.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agentbus/tpm.hpp"

namespace agentbus::bench {

using tpm_op_map = std::map<std::string, std::uint64_t>;  // operation -> count

// tpm_op_counts sums every TPM's counters by operation (null entries: software keys).
tpm_op_map tpm_op_counts(const std::vector<std::shared_ptr<tpm::tpm>>& tpms);

// tpm_ops_since is after - before, keeping only the operations that grew.
tpm_op_map tpm_ops_since(const tpm_op_map& before, const tpm_op_map& after);

// signatures_in counts the signing operations ("sign...") in `ops`.
std::uint64_t signatures_in(const tpm_op_map& ops);

}  // namespace agentbus::bench
