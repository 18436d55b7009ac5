// tss_log.hpp — tpm2-tss's own log lines, routed into the process's spdlog logger
// (internal).
//
// tpm2-tss writes warnings and errors ("WARNING:tcti:src/...:614:Tss2_Tcti_...()
// Failed to connect") to stderr by itself, which breaks a JSON-lines collector and
// bypasses the log level. route_tss_log() points TSS2_LOGFILE at a pipe (tpm2-tss
// fopen()s it on its first line) and a thread reads the pipe and logs each line
// through spdlog's default logger under the logger name "tss2", at the line's level.
//
// Lines at tpm2-tss's debug and trace levels, and lines without a level (the hex
// lines of its buffer dumps), are dropped, not forwarded: at those levels tpm2-tss
// dumps command and response buffers, which hold session keys and ECDH shared
// secrets. One warning says so the first time.
//
// Once per process, before the first ESAPI context (tpm's constructor calls it). An
// operator's own TSS2_LOGFILE is respected: nothing is routed then. A child process
// inherits the parent's setting with AGENTBUS_TSS2_LOGFILE_PID naming the parent, and
// routes its own. The reader thread
// lives as long as the process (tpm2-tss keeps the FILE* for the process's life).
#pragma once

#include <string_view>

namespace agentbus::tpm {

void route_tss_log();

// drain_tss_log waits (at most 200 ms) until the reader has logged what tpm2-tss
// wrote so far: called before a TPM failure is reported, so that a process that exits
// on it does not lose the lines that explain it.
void drain_tss_log();

// forward_tss_line logs one tpm2-tss line (without its newline) through spdlog:
// "LEVEL:module:file:line:function() text". Exposed for tests.
void forward_tss_line(std::string_view line);

}  // namespace agentbus::tpm
