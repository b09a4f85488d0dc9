#!/usr/bin/env bash
# LLM gateway overhead against one local provider (airlock-testkit's
# LlmUpstream, real OpenAI wire format), one process, same machine:
# direct; gateway with PII redaction off (secrets still masked); on.
# Reports p50/p99 at concurrency 1 and requests/s at concurrency C.
# Usage: bench/gateway.sh [REQUESTS] [CONCURRENCY]
# Not yet compared: LiteLLM and Portkey (see the issue); add them here on
# the same upstream when their packages can be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
C="${2:-8}"
cargo run -q --release -p airlock-gateway --example gateway_bench -- "$N" "$C"
