// Runs filter_cost built for wasm32-wasip1 in Node's V8 (node:wasi): the filter's logic in a hot
// loop under V8, to set against its native time and against its time inside Envoy.
//
//   cargo build --release --target wasm32-wasip1 \
//     --manifest-path scripts/bench/filter_cost/Cargo.toml --target-dir target/bench/filter-cost
//   node --no-warnings scripts/bench/filter_cost/wasi.mjs \
//     target/bench/filter-cost/wasm32-wasip1/release/semcache-filter-cost.wasm
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WASI } from 'node:wasi';

// filter_cost reads envoy/envoy.yaml by its absolute build-time path: expose the repository.
const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const wasi = new WASI({ version: 'preview1', args: ['filter_cost', ...process.argv.slice(3)],
                        env: {}, preopens: { [root]: root } });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
wasi.start(instance);
