#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| semcache_fuzz::checks::packed_decode(data));
