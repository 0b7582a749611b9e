#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xingress::fuzzing::snippet(data));
