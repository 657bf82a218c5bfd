#!/usr/bin/env bash
# The test command: typecheck, lint, build, then every test file under node --test (its summary ends the output).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json --noEmit
npx biome check src test bench scripts
npm run build --silent
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
exec node --test --test-reporter=spec --test-concurrency=1 "${files[@]}"
