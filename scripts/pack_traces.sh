#!/usr/bin/env bash
# Regenerates the embedded trace files from the shared data folder (developers only; the
# product reads the packaged copies). Files are gzipped byte-for-byte copies (gzip -n: no
# timestamp, so the output is reproducible).
set -euo pipefail
src=${1:-../shared/data}
dst=src/tandem/workload/data
gzip -9 -n -c "$src/azure_llm_2023/AzureLLMInferenceTrace_conv.csv" > "$dst/azure_llm_2023/AzureLLMInferenceTrace_conv.csv.gz"
gzip -9 -n -c "$src/azure_llm_2023/AzureLLMInferenceTrace_code.csv" > "$dst/azure_llm_2023/AzureLLMInferenceTrace_code.csv.gz"
cp "$src/azure_llm_2023/LICENSE_CC-BY-4.0.txt" "$dst/azure_llm_2023/LICENSE_CC-BY-4.0.txt"
gzip -9 -n -c "$src/mooncake_fast25/conversation_trace.jsonl" > "$dst/mooncake_fast25/conversation_trace.jsonl.gz"
cp "$src/mooncake_fast25/LICENSE-APACHE.txt" "$dst/mooncake_fast25/LICENSE-APACHE.txt"
