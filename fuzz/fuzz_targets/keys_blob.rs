#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sealgate_fuzz::keys_blob(data));
