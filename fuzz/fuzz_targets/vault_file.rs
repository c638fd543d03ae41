//! A vault file (or backup) as read from disk, then opened with a
//! passphrase. Key derivation is skipped for parameters above a small
//! bound: the file's own bounds (1 GiB, 16 passes) keep a hostile file from
//! hanging a real node, but a fuzzer runs millions of inputs.
#![no_main]

use hearth_vault::sealed::SealedRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = SealedRecord::from_bytes(data) else {
        return;
    };
    let params = &record.kdf_params;
    if params.memory_kib <= 64 && params.passes <= 2 && params.lanes <= 2 {
        let _ = record.open("seed", b"passphrase");
    }
    let again = SealedRecord::from_bytes(&record.to_bytes()).expect("a record re-reads");
    assert_eq!(again, record);
});
